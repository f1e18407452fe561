"""The proof's arithmetic on crafted outputs: per-row numbers, the limits table, and the gate's verdict."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from aiaas_services.serialization import proofdata
from aiaas_services.serialization.pipeline import inputs, limits, proof, search, variants


def embeddings(rows: int, width: int = 384, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((rows, width))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_one_bad_row_among_many_fails_the_gate() -> None:
    reference = embeddings(1000)
    variant = reference + np.random.default_rng(1).standard_normal(reference.shape) * 1e-4
    variant[637] = embeddings(1, seed=9)[0]  # one row is another sentence's embedding
    report = proof.measure("int8-dynamic", {"emb": variant}, {"emb": reference}, "", None, None)
    # the flattened cosine over all rows would still read ~0.999 and pass
    flat = float(variant.ravel() @ reference.ravel() / np.linalg.norm(variant) / np.linalg.norm(reference))
    assert flat > 0.998
    assert report.worst_row_cosine < 0.2 and report.worst_rows[0] == 637
    assert report.cosine_similarity > 0.99  # the mean hides it too; the gate does not read the mean
    reason = proof.judge(report, limits.default_tolerance("int8-dynamic", ""))
    assert "worst-row cosine" in reason and "worst rows 637" in reason
    healthy = proof.measure("int8-dynamic", {"emb": reference * 1.0001}, {"emb": reference}, "", None, None)
    assert proof.judge(healthy, limits.default_tolerance("int8-dynamic", "")) == ""


def test_p1_cosine_and_relative_error() -> None:
    reference = embeddings(200)
    variant = reference.copy()
    variant[:3] = -reference[:3]  # 1.5% of rows flipped: p1 reads them, the median does not
    report = proof.measure("fp16", {"e": variant}, {"e": reference}, "", None, None)
    assert report.p1_cosine == pytest.approx(-1.0)
    assert sorted(report.worst_rows[:3]) == [0, 1, 2]
    assert report.max_rel_error == pytest.approx(2.0)  # -x vs x: |2x| / |x|
    assert "p1 cosine" in proof.judge(report, limits.Tolerance(min_p1_cosine=0.99))
    assert "max rel error" in proof.judge(report, limits.Tolerance(max_rel_error=0.5))


def test_every_output_is_judged_and_named() -> None:
    reference = {"logits": np.array([[5.0, -2.0], [1.0, 3.0]]), "score": np.array([[0.5], [0.25]])}
    variant = {"logits": reference["logits"].copy(), "score": np.array([[0.5], [0.75]])}
    report = proof.measure("fp32", variant, reference, "", None, None)
    assert [o.name for o in report.outputs] == ["logits", "score"]
    score = report.outputs[1]
    assert not score.cosine_applies and score.worst_rows[0] == 1  # one value per row: errors, not cosine
    assert report.worst_row_cosine == pytest.approx(1.0)
    reason = proof.judge(report, limits.default_tolerance("fp32", ""))
    assert "max abs error of score 0.5" in reason and "worst rows 1" in reason


def test_classification_top1_and_zero_rows() -> None:
    reference = np.array([[2.0, 1.0], [0.0, 0.0], [1.0, 3.0]])
    variant = np.array([[1.0, 2.0], [0.0, 0.0], [1.0, 3.0]])
    report = proof.measure("int8-static", {"o": variant}, {"o": reference}, "classification", None, None)
    assert report.top1_agreement == pytest.approx(2 / 3)
    assert report.outputs[0].worst_rows[0] == 0
    assert proof.row_cosine(np.zeros((1, 2)), np.zeros((1, 2)))[0] == 1.0  # two zero rows agree
    assert proof.row_cosine(np.zeros((1, 2)), np.ones((1, 2)))[0] == 0.0
    assert "top-1 agreement 0.6667 < 0.9900" in proof.judge(
        report, limits.default_tolerance("int8-static", "classification")
    )
    nan = proof.measure("fp16", {"o": variant * np.nan}, {"o": reference}, "", None, None)
    assert "NaN" in proof.judge(nan, limits.Tolerance())


def test_every_variant_kind_and_task_has_a_limit_that_reads_every_row() -> None:
    for variant in ("fp32", "fp16", "int8-dynamic", "int8-static"):
        for task in ("classification", "regression", "vae", "", "embedding"):
            tolerance = limits.default_tolerance(variant, task)
            assert tolerance.as_dict(), (variant, task)
    assert limits.default_tolerance("fp16", "").min_worst_row_cosine == 0.999
    assert limits.default_tolerance("int8-dynamic", "").min_worst_row_cosine == 0.98
    assert limits.default_tolerance("int8-static", "classification").min_top1_agreement == 0.99
    merged = limits.merge_tolerance(
        limits.default_tolerance("int8-static", ""), limits.Tolerance(min_worst_row_cosine=0.9)
    )
    assert merged.min_worst_row_cosine == 0.9 and merged.min_p1_cosine == 0.99


def test_metric_limits_name_the_drop() -> None:
    report = proof.Report(variant="int8-static", metric_name="accuracy", metric_value=0.95, reference_metric_value=0.97)
    assert proof.judge(report, limits.Tolerance(max_metric_drop=0.03)) == ""
    assert "2.00 points below" in proof.judge(report, limits.Tolerance(max_metric_drop=0.01))
    mse = proof.Report(variant="int8-dynamic", metric_name="mse", metric_value=1.2, reference_metric_value=1.0)
    assert "20.00% above" in proof.judge(mse, limits.Tolerance(max_metric_drop=0.1))


def two_input_model() -> onnx.ModelProto:
    table = helper.make_tensor("table", TensorProto.FLOAT, [50, 4], np.ones(200, np.float32))
    nodes = [
        helper.make_node("Gather", ["table", "Token IDs"], ["emb"]),
        helper.make_node("Cast", ["mask.0"], ["m"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["m", "axes"], ["m3"]),
        helper.make_node("Mul", ["emb", "m3"], ["out"]),
    ]
    graph = helper.make_graph(
        nodes,
        "two",
        [
            helper.make_tensor_value_info("Token IDs", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("mask.0", TensorProto.INT32, ["batch", "seq"]),
        ],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", "seq", 4])],
        [table, helper.make_tensor("axes", TensorProto.INT64, [1], [2])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_signature_generation_and_matching() -> None:
    specs = inputs.signature(two_input_model())
    assert [(s.name, s.vocabulary) for s in specs] == [("Token IDs", 50), ("mask.0", 0)]
    generated = inputs.generate(specs, rows=20)
    assert generated["Token IDs"].dtype == np.int64 and generated["Token IDs"].max() < 50
    mask = generated["mask.0"]
    assert mask.dtype == np.int32 and set(np.unique(mask)) <= {0, 1} and mask[:, 0].all()
    data = proofdata.generated(specs, "classification")
    assert not data.representative and data.task == ""

    good = {"Token IDs": np.ones((40, 7), np.int32), "mask.0": np.ones((40, 7), np.int64), "y": np.zeros(40)}
    fed = proofdata.from_upload(good, specs, "", 8, "calib.npz")
    assert fed.proof["Token IDs"].dtype == np.int64 and fed.proof["mask.0"].dtype == np.int32
    assert len(fed.calibration["mask.0"]) == 8 and len(fed.proof["mask.0"]) == 40
    cases = {
        "no array for input 'mask.0'": {"Token IDs": good["Token IDs"]},
        "'attention_mask', which is not an input": {**good, "attention_mask": good["mask.0"]},
        "input 'Token IDs' expects int64[batch, seq]": {**good, "Token IDs": np.ones((40, 7), np.float32)},
        "rank 1": {**good, "mask.0": np.ones(40, np.int64)},
        "different numbers of rows": {**good, "mask.0": np.ones((39, 7), np.int64)},
    }
    for words, arrays in cases.items():
        with pytest.raises(inputs.DataMismatch, match=words.replace("[", r"\[").replace("(", r"\(")):
            proofdata.from_upload(arrays, specs, "", 8, "calib.npz")


def test_legacy_single_input_npz_still_fits() -> None:
    spec = inputs.InputSpec("features", np.float32, ("batch", 3))
    fed = inputs.match({"x": np.zeros((5, 3)), "y": np.zeros(5)}, [spec], "data.npz")
    assert fed["features"].dtype == np.float32
    with pytest.raises(inputs.DataMismatch, match="axis 1 must be 3"):
        inputs.match({"x": np.zeros((5, 4))}, [spec], "data.npz")


def test_search_keeps_the_fastest_passing_setting_and_says_why_others_lost(tmp_path: Path) -> None:
    settings = [
        variants.QuantizationSettings(per_channel=pc, keep_fp32=k)
        for pc, k in ((False, "none"), (True, "none"), (True, "sensitive"))
    ]
    outcome = {(False, "none"): (False, 5.0), (True, "none"): (True, 9.0), (True, "sensitive"): (True, 7.0)}

    def make(setting: variants.QuantizationSettings, path: Path) -> None:
        if setting.keep_fp32 == "sensitive" and not setting.per_channel:
            raise RuntimeError("never asked")
        path.write_bytes(b"onnx")

    def prove(path: Path, setting: variants.QuantizationSettings) -> proof.Report:
        passed, latency = outcome[(setting.per_channel, setting.keep_fp32)]
        return proof.Report(
            "int8-dynamic",
            accepted=passed,
            reason="" if passed else "worst-row cosine 0.5 < 0.98",
            latency_ms_batch32=latency,
        )

    report = search.search("int8-dynamic", settings, tmp_path, tmp_path / "out.onnx", make, prove, lambda _p: 0.8)
    assert report.accepted and report.latency_ms_batch32 == 7.0 and report.latency_vs_fp32_batch32 == 0.8
    reasons = [c.reason for c in report.candidates]
    assert reasons[0].startswith("failed the proof: worst-row cosine") and reasons[1].startswith("slower: 9.00 ms")
    assert reasons[2] == "" and (tmp_path / "out.onnx").exists()
    none = {key: (False, latency) for key, (_, latency) in outcome.items()}
    outcome.update(none)
    rejected = search.search("int8-dynamic", settings, tmp_path, tmp_path / "out.onnx", make, prove, lambda _p: 0.8)
    assert not rejected.accepted and rejected.reason.startswith("no INT8 setting passed the proof (3 tried)")
    assert rejected.latency_vs_fp32_batch32 == 0.0 and all(not c.passed for c in rejected.candidates)
