"""The fast safetensors writer: what it writes, the official reader reads back exactly."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save

from aiaas_services.training import tensorfile
from aiaas_services.training.tensorfile import Rewriter, encode, write_safetensors


def _awkward_tensors() -> dict[str, torch.Tensor]:
    """Every dtype the writer takes, a scalar, an empty tensor, and a non-contiguous view."""
    generator = torch.Generator().manual_seed(0)
    tensors: dict[str, torch.Tensor] = {
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 4),
        "transposed": torch.randn(5, 3, generator=generator).t(),
        "with_grad": torch.randn(2, 2, generator=generator, requires_grad=True),
    }
    for dtype in tensorfile.DTYPE_NAMES:
        values = torch.randint(0, 2 if dtype is torch.bool else 100, (3, 2), generator=generator)
        tensors[f"t_{str(dtype).split('.')[-1]}"] = values.to(dtype)
    return tensors


def test_a_file_it_writes_loads_back_bit_for_bit_with_its_metadata(tmp_path: Path) -> None:
    tensors = _awkward_tensors()
    path = tmp_path / "checkpoint.safetensors"
    write_safetensors(path, tensors, {"progress": '{"epoch": 3}', "note": "ü"})

    loaded = load_file(str(path))
    assert set(loaded) == set(tensors)
    for name, tensor in tensors.items():
        assert loaded[name].dtype == tensor.dtype, name
        assert loaded[name].shape == tensor.shape, name
        assert torch.equal(loaded[name], tensor.detach()), name
    with safe_open(str(path), framework="pt") as handle:
        assert handle.metadata() == {"progress": '{"epoch": 3}', "note": "ü"}


def test_it_holds_the_same_tensors_as_the_reference_writer(tmp_path: Path) -> None:
    tensors = {k: v.detach().contiguous() for k, v in _awkward_tensors().items()}
    ours = tmp_path / "ours.safetensors"
    write_safetensors(ours, tensors)
    reference = load_file(str(_write_reference(tmp_path, tensors)))
    assert {k: (v.dtype, v.shape) for k, v in load_file(str(ours)).items()} == {
        k: (v.dtype, v.shape) for k, v in reference.items()
    }


def _write_reference(tmp_path: Path, tensors: dict[str, torch.Tensor]) -> Path:
    path = tmp_path / "reference.safetensors"
    path.write_bytes(save(tensors))
    return path


def test_the_header_is_padded_to_eight_bytes_and_sizes_add_up() -> None:
    parts = encode({"w": torch.ones(3)}, {"k": "v"})
    header_length = int.from_bytes(parts[0], "little")
    assert header_length % 8 == 0
    assert len(parts[1]) == header_length
    assert sum(p.nbytes for p in parts[2:]) == 12


def test_an_unsupported_dtype_is_refused_with_its_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="complex64"):
        write_safetensors(tmp_path / "x.safetensors", {"z": torch.zeros(2, dtype=torch.complex64)})
    assert not (tmp_path / "x.safetensors").exists()


def test_a_failed_write_leaves_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "checkpoint.safetensors"
    write_safetensors(path, {"epoch": torch.tensor(1)})

    def disk_full(fd: int, buffers: list[memoryview]) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "writev", disk_full)
    with pytest.raises(OSError):
        write_safetensors(path, {"epoch": torch.tensor(2)})
    assert load_file(str(path))["epoch"].item() == 1
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind


def test_short_writes_are_continued(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A regular file may accept fewer bytes than asked; the writer carries on where it stopped."""
    real_writev = os.writev

    def seven_bytes_at_a_time(fd: int, buffers: list[memoryview]) -> int:
        first = bytes(buffers[0])[:7]
        return real_writev(fd, [first])

    monkeypatch.setattr(os, "writev", seven_bytes_at_a_time)
    tensors = {"a": torch.arange(10, dtype=torch.float32), "b": torch.ones(3, 3)}
    write_safetensors(tmp_path / "slow.safetensors", tensors, {"m": "x"})
    loaded = load_file(str(tmp_path / "slow.safetensors"))
    assert torch.equal(loaded["a"], tensors["a"]) and torch.equal(loaded["b"], tensors["b"])


def test_each_rewrite_reads_whole_and_the_replaced_file_becomes_the_spare(tmp_path: Path) -> None:
    """Epoch after epoch, ``path`` holds exactly the last write (longer or shorter than the one before),
    and the file it replaced is kept as the spare that the next write overwrites in place."""
    path = tmp_path / "checkpoint.safetensors"
    versions = [torch.arange(n, dtype=torch.float32) for n in (1000, 10, 500)]
    for number, values in enumerate(versions):
        write_safetensors(path, {"w": values}, {"epoch": str(number)})
        assert torch.equal(load_file(str(path))["w"], values)
        assert path.stat().st_size == sum(part.nbytes for part in encode({"w": values}, {"epoch": str(number)}))
        if number:
            assert torch.equal(load_file(str(tensorfile.spare_path(path)))["w"], versions[number - 1])
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name, tensorfile.spare_path(path).name]


def test_a_link_left_by_a_crash_between_renames_does_not_stop_the_next_write(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.safetensors"
    write_safetensors(path, {"w": torch.ones(3)})
    os.link(path, path.with_name(path.name + ".previous"))  # the state a crash mid-swap leaves
    write_safetensors(path, {"w": torch.zeros(3)})
    assert torch.equal(load_file(str(path))["w"], torch.zeros(3))
    assert torch.equal(load_file(str(tensorfile.spare_path(path)))["w"], torch.ones(3))


def test_the_rewriter_saves_what_the_tensors_hold_at_each_write(tmp_path: Path) -> None:
    """The same tensors, changed in place between writes (as the optimizer does), are written as they are
    at each write; a new layout, a moved tensor and a non-contiguous one are noticed."""
    path = tmp_path / "checkpoint.safetensors"
    writer = Rewriter(path)
    weights = torch.zeros(256, 64)
    step = torch.tensor(0.0)
    for epoch in range(1, 6):
        weights.fill_(epoch)
        step.fill_(epoch)
        writer.write({"w": weights, "step": step}, {"epoch": str(epoch)})
        loaded = load_file(str(path))
        assert torch.equal(loaded["w"], torch.full((256, 64), float(epoch))) and loaded["step"].item() == epoch
        with safe_open(str(path), framework="pt") as handle:
            assert handle.metadata() == {"epoch": str(epoch)}
    writer.write({"w": weights, "best.w": torch.ones(2, dtype=torch.bfloat16)}, {"epoch": "6"})  # new layout
    loaded = load_file(str(path))
    assert torch.equal(loaded["w"], torch.full((256, 64), 5.0)) and loaded["best.w"].dtype == torch.bfloat16
    moved = torch.full((256, 64), 7.0)  # same name, shape and dtype, other memory
    writer.write({"w": moved, "best.w": torch.ones(2, dtype=torch.bfloat16)}, {})
    assert torch.equal(load_file(str(path))["w"], moved)
    strided = torch.arange(12.0).reshape(3, 4).t()  # encoded afresh each time, never aliased
    writer.write({"w": strided}, {})
    strided.add_(1)
    writer.write({"w": strided}, {})
    assert torch.equal(load_file(str(path))["w"], strided)


def test_a_failed_rewrite_raises_and_leaves_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "checkpoint.safetensors"
    writer = Rewriter(path)
    epoch = torch.tensor(1)
    writer.write({"epoch": epoch}, {})

    def disk_full(fd: int, buffers: list[memoryview]) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "writev", disk_full)
    epoch.fill_(2)
    with pytest.raises(OSError, match="No space left"):
        writer.write({"epoch": epoch}, {})
    assert load_file(str(path))["epoch"].item() == 1


@pytest.mark.parametrize("exchange", [True, False], ids=["rename-exchange", "link-and-rename"])
def test_the_rewriter_swaps_the_file_and_its_spare_and_closes_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exchange: bool
) -> None:
    """Each write leaves ``path`` whole and the replaced version as the spare, whether the names are
    swapped by RENAME_EXCHANGE or (where that is missing) by a link and two renames; files shrink too."""
    if not exchange:
        monkeypatch.setattr(tensorfile, "_exchange", lambda first, second: False)
    path = tmp_path / "checkpoint.safetensors"
    path.write_bytes(b"a checkpoint from before a restart")  # resuming: the writer did not create it
    writer = Rewriter(path)
    versions = [torch.arange(n, dtype=torch.float32) for n in (1000, 10, 500, 3)]
    try:
        for number, values in enumerate(versions):
            writer.write({"w": values}, {"epoch": str(number)})
            assert torch.equal(load_file(str(path))["w"], values)
            expected = sum(part.nbytes for part in encode({"w": values}, {"epoch": str(number)}))
            assert path.stat().st_size == expected
            if number:
                assert torch.equal(load_file(str(tensorfile.spare_path(path)))["w"], versions[number - 1])
    finally:
        writer.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name, tensorfile.spare_path(path).name]
    open_files = [os.readlink(f) for f in Path("/proc/self/fd").iterdir() if f.exists()]
    assert not [f for f in open_files if f.startswith(str(tmp_path))]
