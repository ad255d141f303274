"""File records of a spec (``ModelSpec.files``) belong to the one file they were computed from: a spec derived
from a sidecar and saved beside another artifact does not carry them, so that artifact still loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from lite_deploy.errors import ArtifactMismatchError
from lite_deploy.spec import ModelSpec, check_files, file_records, sidecar_path


def _artifact(folder: Path, name: str, data: bytes, spec: ModelSpec) -> Path:
    path = folder / name
    path.write_bytes(data)
    spec.replace(files=file_records(path)).save(sidecar_path(path))
    return path


def test_a_derived_spec_leaves_the_records_of_its_source_behind(tmp_path: Path) -> None:
    base = ModelSpec(task="detect", names=("a",), imgsz=(32, 32), output_layout="boxes_scores",
                     output_names=("boxes", "scores"))
    fp32 = _artifact(tmp_path, "m.onnx", b"fp32 model bytes", base)
    loaded = ModelSpec.load(sidecar_path(fp32))
    assert loaded.files[".onnx"]["size"] == len(b"fp32 model bytes")

    int8 = tmp_path / "m_int8.onnx"
    int8.write_bytes(b"int8")
    derived = loaded.replace(precision="int8")
    assert derived.files == {}
    derived.save(sidecar_path(int8))
    check_files(int8)  # no records: passes

    kept = loaded.replace(files=loaded.files)  # records given explicitly are kept
    assert kept.files == loaded.files
    kept.save(sidecar_path(int8))
    with pytest.raises(ArtifactMismatchError, match="m_int8.onnx has 4 bytes where m_int8.onnx.json records 16"):
        check_files(int8)
