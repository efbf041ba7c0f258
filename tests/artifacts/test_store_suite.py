"""The artifact store's conformance suite: every case runs on ``file://``, on a real S3 server
(moto) and on a real XRootD server (the ``[xrootd]`` entries run inside a private network
namespace, see ``test_xrootd.py``)."""

from __future__ import annotations

import hashlib
import random
import time
from pathlib import Path

import pytest

from lumiflow.artifacts import (
    ArtifactCorrupt,
    ArtifactError,
    ArtifactNotFound,
    ArtifactReadOnly,
    ArtifactStore,
    ArtifactUnavailable,
    InvalidArtifactURI,
)
from lumiflow.common.errors import NotFound, TemporaryError, ValidationFailed
from tests.artifacts.conftest import ArtifactBackend

pytestmark = pytest.mark.timeout(90)

#: Larger than the store's 4 MiB streaming chunk, so that transfers take several.
BIG = 9 << 20


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tree_sha(files: dict[str, bytes]) -> str:
    """The directory digest as documented, recomputed here with the standard library."""
    lines = "".join(f"{p}\t{hashlib.sha256(b).hexdigest()}\t{len(b)}\n" for p, b in sorted(files.items()))
    return sha(lines.encode())


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for relative, data in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def read_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def model_files(seed: int = 1) -> dict[str, bytes]:
    rng = random.Random(seed)
    return {
        "config.json": b'{"lr": 0.001, "layers": 4}',
        "weights/layer-0.bin": rng.randbytes(BIG),
        "weights/layer-1.bin": rng.randbytes(1000),
        "weights/empty.bin": b"",
        "nested/a/b/c.txt": b"deep",
        ".hidden": b"dot files belong to the artifact",
    }


def test_a_file_round_trips_with_its_digest(artifact_backend: ArtifactBackend, tmp_path: Path) -> None:
    store = artifact_backend.store()
    data = random.Random(7).randbytes(BIG + 123)
    source = tmp_path / "metrics.bin"
    source.write_bytes(data)
    uri = store.uri_for("team", "runs", "r1", "train", "metrics.bin")

    stored = store.put(source, uri)

    assert stored.uri == uri and stored.uri.startswith(store.profile_root("team") + "/")
    assert (stored.digest, stored.size, stored.is_dir) == (sha(data), len(data), False)
    fetched = store.get(uri, tmp_path / "out" / "metrics.bin", expected_digest=stored.digest)
    assert fetched == stored
    assert (tmp_path / "out" / "metrics.bin").read_bytes() == data
    assert store.stat(uri) == stored
    with store.open(uri) as handle:
        assert handle.read(10) == data[:10]


def test_a_tree_round_trips_with_its_digest(artifact_backend: ArtifactBackend, tmp_path: Path) -> None:
    store = artifact_backend.store()
    files = model_files()
    uri = store.uri_for("team", "runs", "r1", "train", "model")

    stored = store.put(write_tree(tmp_path / "model", files), uri)

    assert stored.is_dir
    assert stored.digest == tree_sha(files)
    assert stored.size == sum(len(b) for b in files.values())
    assert store.stat(uri) == stored
    fetched = store.get(uri, tmp_path / "copy", expected_digest=stored.digest)
    assert fetched == stored
    assert read_tree(tmp_path / "copy") == files
    assert not [p for p in tmp_path.iterdir() if ".lumiflow-" in p.name], "a staging folder was left behind"


def test_put_replaces_what_was_there(artifact_backend: ArtifactBackend, tmp_path: Path) -> None:
    store = artifact_backend.store()
    uri = store.uri_for("team", "datasets", "showers")
    first = {"a.h5": b"a" * 100, "b.h5": b"b" * 100, "sub/c.h5": b"c"}
    second = {"a.h5": b"new a"}
    store.put(write_tree(tmp_path / "v1", first), uri)

    assert store.put(write_tree(tmp_path / "v2", second), uri).digest == tree_sha(second)
    assert store.stat(uri).digest == tree_sha(second)
    store.get(uri, tmp_path / "got")
    assert read_tree(tmp_path / "got") == second

    (tmp_path / "one.h5").write_bytes(b"just a file now")
    replaced = store.put(tmp_path / "one.h5", uri)
    assert (replaced.is_dir, replaced.digest) == (False, sha(b"just a file now"))
    assert store.stat(uri) == replaced
    # get over an existing folder replaces it with the file
    assert store.get(uri, tmp_path / "got").digest == replaced.digest
    assert (tmp_path / "got").read_bytes() == b"just a file now"


def test_no_temporary_names_are_left_next_to_an_artifact(
    artifact_backend: ArtifactBackend, tmp_path: Path
) -> None:
    store = artifact_backend.store()
    (tmp_path / "f").write_bytes(b"x")
    store.put(tmp_path / "f", store.uri_for("team", "run", "one"))
    store.put(write_tree(tmp_path / "t", {"x": b"y"}), store.uri_for("team", "run", "two"))
    listing = store.stat(store.uri_for("team", "run"))
    assert listing.is_dir and listing.digest == tree_sha({"one": b"x", "two/x": b"y"})


def test_exists_and_delete(artifact_backend: ArtifactBackend, tmp_path: Path) -> None:
    store = artifact_backend.store()
    (tmp_path / "f").write_bytes(b"data")
    file_uri = store.uri_for("team", "a", "f")
    tree_uri = store.uri_for("team", "a", "tree")
    store.put(tmp_path / "f", file_uri)
    store.put(write_tree(tmp_path / "tree", {"x/y/z": b"1", "w": b"2"}), tree_uri)
    assert store.exists(file_uri) and store.exists(tree_uri)

    store.delete(tree_uri)
    assert not store.exists(tree_uri)
    assert store.exists(file_uri), "deleting a tree removed its sibling"
    store.delete(file_uri)
    assert not store.exists(file_uri)
    store.delete(file_uri)  # deleting nothing is not an error: a retried delete succeeds

    store.put(tmp_path / "f", file_uri)
    store.delete(store.profile_root("team"))
    assert not store.exists(store.profile_root("team"))


def test_a_missing_artifact_is_not_found(artifact_backend: ArtifactBackend, tmp_path: Path) -> None:
    store = artifact_backend.store()
    uri = store.uri_for("team", "never", "written")
    for call in (
        lambda: store.get(uri, tmp_path / "x"),
        lambda: store.stat(uri),
        lambda: store.open(uri),
    ):
        with pytest.raises(ArtifactNotFound, match="no artifact at") as caught:
            call()
        assert isinstance(caught.value, NotFound) and caught.value.http_status == 404
    assert not (tmp_path / "x").exists()
    assert not store.exists(uri)
    with pytest.raises(ArtifactNotFound, match="does not exist"):
        store.put(tmp_path / "nothing-here", uri)


def test_a_corrupt_download_is_detected(artifact_backend: ArtifactBackend, tmp_path: Path) -> None:
    store = artifact_backend.store()
    (tmp_path / "model.pt").write_bytes(b"the weights we trained")
    file_uri = store.uri_for("team", "m", "model.pt")
    tree_uri = store.uri_for("team", "m", "tree")
    good_file = store.put(tmp_path / "model.pt", file_uri)
    good_tree = store.put(write_tree(tmp_path / "tree", {"a": b"1", "b/c": b"2"}), tree_uri)
    with store.open(file_uri, "wb") as handle:
        handle.write(b"the weights someone changed")
    with store.open(tree_uri + "/b/c", "wb") as handle:
        handle.write(b"3")

    for uri, good in ((file_uri, good_file), (tree_uri, good_tree)):
        with pytest.raises(ArtifactCorrupt, match="corrupt") as caught:
            store.get(uri, tmp_path / "download", expected_digest=good.digest)
        assert good.digest in caught.value.message and store.stat(uri).digest in caught.value.message
        assert not (tmp_path / "download").exists(), "a corrupt download landed"
        assert not [p for p in tmp_path.iterdir() if ".lumiflow-" in p.name]
    # an existing file at the destination is kept when the download is corrupt
    (tmp_path / "download").write_bytes(b"previous")
    with pytest.raises(ArtifactCorrupt):
        store.get(file_uri, tmp_path / "download", expected_digest=good_file.digest)
    assert (tmp_path / "download").read_bytes() == b"previous"
    with pytest.raises(InvalidArtifactURI, match="not a digest"):
        store.get(file_uri, tmp_path / "download", expected_digest="md5:abc")


def test_profiles_stay_under_their_roots(artifact_backend: ArtifactBackend, tmp_path: Path) -> None:
    store = artifact_backend.store()
    root = artifact_backend.root
    assert store.root == root
    assert store.profile_root("team-a") == root + "/team-a"
    uri = store.uri_for("team-a", "runs", "r1", "train", "model")
    assert uri == root + "/team-a/runs/r1/train/model"
    assert store.owner_of(uri) == "team-a"
    assert store.owner_of(store.profile_root("team-b")) == "team-b"
    assert store.owner_of(root) is None
    assert store.owner_of("file:///somewhere/else") is None

    (tmp_path / "f").write_bytes(b"mine")
    store.put(tmp_path / "f", uri, profile="team-a")
    assert store.stat(uri, profile="team-a").size == 4
    foreign = store.uri_for("team-b", "stolen")
    for call in (
        lambda: store.put(tmp_path / "f", foreign, profile="team-a"),
        lambda: store.get(uri, tmp_path / "g", profile="team-b"),
        lambda: store.delete(uri, profile="team-b"),
        lambda: store.open(uri, profile="team-b"),
        lambda: store.exists(uri, profile="team-b"),
    ):
        with pytest.raises(InvalidArtifactURI, match=r"outside 'team-.'") as caught:
            call()
        assert isinstance(caught.value, ValidationFailed) and caught.value.http_status == 422
    assert not store.exists(foreign)
    assert store.exists(uri)


@pytest.mark.parametrize(
    ("parts", "reason"),
    [
        (("..", "x"), "not an artifact path part"),
        (("a/b",), "not an artifact path part"),
        (("",), "not an artifact path part"),
        ((".staging",), "not an artifact path part"),
        (("a b",), "not an artifact path part"),
    ],
)
def test_uri_for_refuses_bad_parts(
    artifact_backend: ArtifactBackend, parts: tuple[str, ...], reason: str
) -> None:
    with pytest.raises(InvalidArtifactURI, match=reason):
        artifact_backend.store().uri_for("team", *parts)


def test_bad_and_foreign_uris_are_refused(artifact_backend: ArtifactBackend, tmp_path: Path) -> None:
    store = artifact_backend.store()
    root = artifact_backend.root
    (tmp_path / "f").write_bytes(b"x")
    refused = {
        f"{root}/team/../other/x": "must not climb",
        f"{root}/team/./x": "must not climb",
        f"{root}/team//x": "empty path segment",
        f"{root}/team/x*": "glob and query",
        f"{root}/Not_A_Profile/x": "not under a profile's root",
        f"{root}/team": "a profile's root",
        root: "not under a profile's root",
        "hdfs://namenode/data/x": "unknown scheme",
        "s3://another-bucket/team/x": "outside this artifact store",
        "root://elsewhere:1094//eos/team/x": "outside this artifact store",
        str(tmp_path / "not-the-store" / "team" / "x"): "outside this artifact store",
        "s3://Bad_Bucket/x": "not an S3 bucket name",
        "file://host/x": "names no host",
    }
    for uri, reason in refused.items():
        with pytest.raises(InvalidArtifactURI, match=reason) as caught:
            store.put(tmp_path / "f", uri)
        assert caught.value.field == "uri" and caught.value.http_status == 422
    with pytest.raises(InvalidArtifactURI, match="not a DNS label"):
        store.profile_root("Team_A")
    assert not store.exists(store.profile_root("other"))
    assert not store.exists(store.profile_root("team"))


def test_read_only_roots_are_read_and_never_written(
    artifact_backend: ArtifactBackend, tmp_path: Path
) -> None:
    cvmfs = write_tree(tmp_path / "cvmfs" / "sft.cern.ch" / "data", {"calo.h5": b"showers", "v1/x": b"1"})
    store = artifact_backend.store(readonly_roots=(str(cvmfs),))
    assert store.readonly_roots == (cvmfs.as_uri(),)
    shared = str(cvmfs / "calo.h5")  # plain paths mean file://

    assert store.exists(shared) and store.stat(shared).digest == sha(b"showers")
    assert store.get(shared, tmp_path / "calo.h5").digest == sha(b"showers")
    assert store.get(cvmfs.as_uri() + "/v1", tmp_path / "v1").digest == tree_sha({"x": b"1"})
    assert store.local_path(shared) == cvmfs / "calo.h5"
    assert store.owner_of(shared) is None
    # the caller's profile does not matter for reads of a shared root
    assert store.stat(shared, profile="team").size == len(b"showers")

    for call in (
        lambda: store.put(tmp_path / "calo.h5", str(cvmfs / "mine.h5")),
        lambda: store.delete(shared),
        lambda: store.open(shared, "wb"),
    ):
        with pytest.raises(ArtifactReadOnly, match="is a read-only root") as caught:
            call()
        assert isinstance(caught.value, ArtifactError) and caught.value.http_status == 403
    assert read_tree(cvmfs) == {"calo.h5": b"showers", "v1/x": b"1"}


def test_local_path_only_for_files_on_this_machine(artifact_backend: ArtifactBackend) -> None:
    store = artifact_backend.store()
    uri = store.uri_for("team", "runs", "r1", "model")
    if artifact_backend.name == "file":
        assert store.local_path(uri) == Path(uri.removeprefix("file://"))
    else:
        assert store.local_path(uri) is None


def test_an_unreachable_endpoint_is_unavailable_quickly(
    artifact_backend: ArtifactBackend, tmp_path: Path
) -> None:
    if artifact_backend.unreachable is None:
        pytest.skip(f"{artifact_backend.name}:// has no endpoint to be unreachable")
    root, options = artifact_backend.unreachable
    store = ArtifactStore(root, storage_options=options)
    uri = store.uri_for("team", "x")
    (tmp_path / "f").write_bytes(b"x")
    for call in (
        lambda: store.exists(uri),
        lambda: store.put(tmp_path / "f", uri),
        lambda: store.get(uri, tmp_path / "g"),
        lambda: store.delete(uri),
    ):
        started = time.monotonic()
        with pytest.raises(ArtifactUnavailable, match="cannot be reached") as caught:
            call()
        assert time.monotonic() - started < 15
        error = caught.value
        assert isinstance(error, TemporaryError) and error.http_status == 503 and error.delay > 0
        assert "Traceback" not in error.message and "\n" not in error.message
        assert error.to_body()["error"] == "artifact_unavailable"
