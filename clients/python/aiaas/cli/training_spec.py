"""The TrainingSpec that `aiaas train` sends: a --spec file (if any) with the command's flags applied on top."""

from __future__ import annotations

import argparse
from pathlib import Path

from aiaas.client.refs import version_ref
from aiaas.client.training import parse_spec
from aiaas.training.v1 import training_pb2


def build_spec(args: argparse.Namespace) -> training_pb2.TrainingSpec:
    """The spec from --spec (if any) with the flags applied on top."""
    spec = parse_spec(Path(args.spec).read_text()) if args.spec else training_pb2.TrainingSpec()
    if args.model:
        spec.model_name = args.model
    if not spec.model_name:
        raise ValueError("give the model name to register under (aiaas train MODEL ...)")
    if _apply_text(spec, args):
        _apply_data(spec, args)
        _apply_training(spec, args)
        if spec.data.WhichOneof("source") != "registry":
            raise ValueError("a text job reads its labelled text from --data registry:MODEL/VERSION/data.csv")
        return spec
    kind = args.arch or spec.architecture.WhichOneof("kind") or "mlp"
    block = getattr(spec.architecture, kind)
    block.SetInParent()
    for flag, field in (
        ("hidden", "hidden_sizes"),
        ("dropout", "dropout"),
        ("conv", "conv_channels"),
        ("hidden_size", "hidden_size"),
        ("sequence_length", "sequence_length"),
        ("d_model", "d_model"),
        ("heads", "num_heads"),
        ("layers", "num_layers"),
        ("latent", "latent_size"),
    ):
        value = getattr(args, flag)
        if value is None:
            continue
        if field not in block.DESCRIPTOR.fields_by_name:
            raise ValueError(f"--{flag.replace('_', '-')} does not apply to --arch {kind}")
        if isinstance(value, list):
            block.ClearField(field)
            getattr(block, field).extend(value)
        else:
            setattr(block, field, value)
    if args.activation:
        if kind != "mlp":
            raise ValueError("--activation applies to --arch mlp")
        block.activation = training_pb2.Activation.Value(f"ACTIVATION_{args.activation.upper()}")
    if args.cell:
        if kind != "rnn":
            raise ValueError("--cell applies to --arch rnn")
        block.cell = training_pb2.RnnCell.Value(f"RNN_CELL_{args.cell.upper()}")
    if args.image:
        if kind != "cnn" or len(args.image) != 3:
            raise ValueError("--image takes channels,height,width for --arch cnn")
        block.channels, block.height, block.width = args.image
    _apply_data(spec, args)
    _apply_training(spec, args)
    if spec.data.WhichOneof("source") is None:
        raise ValueError("give the data: --data sklearn:digits, synthetic:linear or registry:MODEL/VERSION/ARTIFACT")
    return spec


TEXT_FLAGS = (
    ("max_length", "max_length"),
    ("temperature", "temperature"),
    ("alpha", "alpha"),
    ("student_vocab", "student_vocab_size"),
    ("student_hidden", "student_hidden_size"),
    ("student_layers", "student_layers"),
    ("student_heads", "student_heads"),
)


def _apply_text(spec: training_pb2.TrainingSpec, args: argparse.Namespace) -> bool:
    """Fill spec.text from the text flags; True when the job is a text job."""
    modes = [flag for flag in ("finetune", "distill", "from_scratch") if getattr(args, flag)]
    if len(modes) > 1:
        raise ValueError("choose one of --finetune, --distill and --from-scratch")
    if not modes and not spec.HasField("text"):
        used = [f"--{flag.replace('_', '-')}" for flag, _ in TEXT_FLAGS if getattr(args, flag) is not None]
        if used or args.freeze_encoder or args.text_task:
            raise ValueError(
                f"{', '.join(used) or '--freeze-encoder/--text-task'} need --finetune, --distill or --from-scratch"
            )
        return False
    if args.arch or spec.architecture.WhichOneof("kind"):
        raise ValueError("a text job (--finetune, --distill, --from-scratch) takes no --arch")
    text = spec.text
    text.SetInParent()
    if args.finetune:
        text.base.CopyFrom(version_ref(args.finetune))
    if args.distill:
        text.teacher.CopyFrom(version_ref(args.distill))
    if args.text_task:
        text.task = args.text_task
    if args.freeze_encoder:
        text.freeze_encoder = True
    for flag, field in TEXT_FLAGS:
        if getattr(args, flag) is not None:
            setattr(text, field, getattr(args, flag))
    return True


def _apply_data(spec: training_pb2.TrainingSpec, args: argparse.Namespace) -> None:
    if args.data:
        source, _, value = args.data.partition(":")
        if source == "sklearn":
            spec.data.sklearn = value
        elif source == "synthetic":
            spec.data.synthetic.kind = value
        elif source == "registry":
            parts = value.split("/")
            if len(parts) != 3:
                raise ValueError("--data registry:MODEL/VERSION/ARTIFACT, e.g. registry:my-data/1/data.npz")
            spec.data.registry.ref.model_name = parts[0]
            if parts[1].isdigit():
                spec.data.registry.ref.version = int(parts[1])
            else:
                spec.data.registry.ref.alias = parts[1]
            spec.data.registry.artifact_name = parts[2]
        else:
            raise ValueError(f"--data must start with sklearn:, synthetic: or registry:, got {args.data!r}")
    if args.task:
        spec.data.registry.task = args.task
    for flag, field in (
        ("samples", "num_samples"),
        ("features", "num_features"),
        ("classes", "num_classes"),
        ("noise", "noise"),
        ("slope", "slope"),
        ("intercept", "intercept"),
    ):
        value = getattr(args, flag)
        if value is not None:
            if spec.data.WhichOneof("source") != "synthetic":
                raise ValueError(f"--{flag} applies to synthetic data")
            setattr(spec.data.synthetic, field, value)


def _apply_training(spec: training_pb2.TrainingSpec, args: argparse.Namespace) -> None:
    for flag, field in (("epochs", "epochs"), ("batch_size", "batch_size"), ("seed", "seed"), ("device", "device")):
        if getattr(args, flag) is not None:
            setattr(spec, field, getattr(args, flag))
    if args.world_size is not None:
        spec.world_size = args.world_size
    opt = spec.optimizer
    if args.optimizer:
        opt.kind = training_pb2.OptimizerKind.Value(f"OPTIMIZER_KIND_{args.optimizer.upper()}")
    if args.schedule:
        opt.schedule = training_pb2.LrSchedule.Value(f"LR_SCHEDULE_{args.schedule.upper()}")
    for flag, field in (
        ("lr", "learning_rate"),
        ("momentum", "momentum"),
        ("weight_decay", "weight_decay"),
        ("l1", "l1_penalty"),
        ("clip", "grad_clip_norm"),
    ):
        if getattr(args, flag) is not None:
            setattr(opt, field, getattr(args, flag))
    if args.early_stop:
        metric, _, patience = args.early_stop.partition(":")
        spec.early_stopping.metric = metric
        if patience:
            spec.early_stopping.patience = int(patience)
    if args.export:
        spec.export.variants.extend(v for v in args.export.split(",") if v)
    if args.alias:
        if not spec.export.variants:
            raise ValueError("--alias needs --export (the alias goes on an exported variant)")
        spec.export.set_alias = args.alias
    for tag in args.tag:
        key, sep, value = tag.partition("=")
        if not sep:
            raise ValueError(f"--tag takes KEY=VALUE, got {tag!r}")
        spec.tags[key] = value
    if args.description:
        spec.description = args.description
