"""Parsing artifact URIs, profile and part names, digests: no backend involved."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from lumiflow.artifacts import ArtifactStore, InvalidArtifactURI, default_root, tree_digest
from lumiflow.artifacts.locations import check_part, check_profile, parse

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize(
    ("text", "uri", "fs_path"),
    [
        ("/cvmfs/sft.cern.ch/lcg", "file:///cvmfs/sft.cern.ch/lcg", "/cvmfs/sft.cern.ch/lcg"),
        (
            "file:///home/u/.lumiflow/artifacts/",
            "file:///home/u/.lumiflow/artifacts",
            "/home/u/.lumiflow/artifacts",
        ),
        ("file://localhost/data/x", "file:///data/x", "/data/x"),
        ("s3://bucket", "s3://bucket", "bucket"),
        ("s3://my.bucket-1/prefix/team/x", "s3://my.bucket-1/prefix/team/x", "my.bucket-1/prefix/team/x"),
        ("root://eos.cern.ch:1094//eos/user/x", "root://eos.cern.ch:1094//eos/user/x", "/eos/user/x"),
        ("root://eos.cern.ch/eos/user/x", "root://eos.cern.ch//eos/user/x", "/eos/user/x"),
        ("ROOT://host//data", "root://host//data", "/data"),
    ],
)
def test_uris_are_parsed_into_one_canonical_spelling(text: str, uri: str, fs_path: str) -> None:
    location = parse(text)
    assert (location.uri, location.fs_path) == (uri, fs_path)
    assert parse(location.uri) == location


def test_a_relative_path_is_taken_from_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert parse("data/x").uri == (tmp_path / "data" / "x").as_uri()
    with pytest.raises(InvalidArtifactURI, match="must not climb"):
        parse("../x")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "non-empty"),
        ("gs://bucket/x", "unknown scheme 'gs'"),
        ("s3://bucket/a/../b", "must not climb"),
        ("s3://ab", "not an S3 bucket name"),
        ("root://host:port//x", "not an XRootD host"),
        ("/data/x?versionId=1", "glob and query"),
        ("/data/line\nbreak", "control"),
        ("c:/data", "neither a URI"),
        ("s3:/bucket/x", "neither a URI"),
    ],
)
def test_malformed_uris_are_refused_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(InvalidArtifactURI, match=reason) as caught:
        parse(text)
    assert caught.value.field == "uri" and caught.value.http_status == 422


def test_profiles_are_dns_labels_and_parts_single_names() -> None:
    assert check_profile("team-a") == "team-a"
    for bad in ("Team", "a_b", "-a", "a" * 64, ""):
        with pytest.raises(InvalidArtifactURI, match="DNS label"):
            check_profile(bad)
    for good in ("model", "epoch=3", "part-00000.parquet", "v1.2", "_SUCCESS"):
        assert check_part(good) == good
    for bad in ("..", ".", "a/b", ".tmp", "a b", "", "x" * 256):
        with pytest.raises(InvalidArtifactURI, match="not an artifact path part"):
            check_part(bad)


def test_store_configuration_is_checked(tmp_path: Path) -> None:
    with pytest.raises(InvalidArtifactURI, match="unknown scheme") as caught:
        ArtifactStore("gs://bucket/x")
    assert caught.value.field == "root"
    with pytest.raises(InvalidArtifactURI, match="overlaps") as caught:
        ArtifactStore(str(tmp_path), readonly_roots=[str(tmp_path / "shared")])
    assert caught.value.field == "readonly_roots"


def test_the_default_root_is_under_lumiflow_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LUMIFLOW_HOME", str(tmp_path / "home"))
    assert default_root() == (tmp_path / "home" / "artifacts").as_uri()


def test_the_tree_digest_is_the_documented_lines() -> None:
    files = [("b/c", hashlib.sha256(b"2").hexdigest(), 1), ("a", hashlib.sha256(b"1").hexdigest(), 1)]
    text = "".join(f"{p}\t{h}\t{s}\n" for p, h, s in sorted(files))
    assert tree_digest(files) == "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    assert tree_digest([]) == "sha256:" + hashlib.sha256(b"").hexdigest()
