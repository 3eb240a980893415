"""Archive links are judged by where they really lead once unpacked, not by their text.

A chain of links that each look inside on paper (``r -> .``, ``up -> r/..``, ``up2 -> up/..``,
then ``photo -> ../../up2/secret.jpg``) leads outside the folder; the archive is refused and
nothing is unpacked, nothing is created or read outside. ``check`` lists such links in a folder
made by hand, and reads nothing through them.
"""

from __future__ import annotations

import io
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest
from minireal_subset import copy_spair

from corr.datasets import load_spair
from corr.datasets.__main__ import main
from corr.datasets.check import check_dataset
from corr.datasets.download import UnsafeArchiveError, unpack_archive

SECRET = b"SECRET: outside the data folder"
CHAIN = [("r", "."), ("up", "r/.."), ("up2", "up/..")]  # each looks inside on paper


def _tar(members: list[tuple[str, str | None, bytes]], folder: Path | None = None) -> bytes:
    """A tar.gz of ``folder`` (as SPair-71k/) then ``members``: (name, link target or None,
    data); a name starting with ``hard:`` is a hard link to the archive name given as target."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        if folder is not None:
            tf.add(folder, arcname="SPair-71k")
        for name, link, data in members:
            hard = name.startswith("hard:")
            m = tarfile.TarInfo(name.removeprefix("hard:"))
            if link is None:
                m.size = len(data)
                tf.addfile(m, io.BytesIO(data))
            else:
                m.type, m.linkname = (tarfile.LNKTYPE if hard else tarfile.SYMTYPE), link
                tf.addfile(m)
    return buf.getvalue()


def _zip(members: list[tuple[str, str | None, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, link, data in members:
            if link is None:
                zf.writestr(name, data)
            else:
                info = zipfile.ZipInfo(name)
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                zf.writestr(info, link)
    return buf.getvalue()


def _chain(top: str, photo: str) -> list[tuple[str, str | None, bytes]]:
    links = [(f"{top}/{name}", target, b"") for name, target in CHAIN]
    return [*links, (f"{top}/{photo}", "../../up2/secret.jpg", b"")]


def _everything(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_a_chain_of_links_leading_outside_is_refused(kind: str, tmp_path: Path) -> None:
    # out = box/a/out: r -> out, up -> box/a, up2 -> box, photo -> box/secret.jpg
    box = tmp_path / "box"
    (box / "a").mkdir(parents=True)
    (box / "secret.jpg").write_bytes(SECRET)
    members = _chain("SPair-71k", "JPEGImages/cat/photo.jpg")
    archive = tmp_path / f"chain.{kind}"
    archive.write_bytes(_tar(members) if kind == "tar" else _zip(members))
    with pytest.raises(UnsafeArchiveError, match="outside the target folder") as err:
        unpack_archive(archive, box / "a" / "out", member="SPair-71k")
    assert "'SPair-71k/JPEGImages/cat/photo.jpg' -> '../../up2/secret.jpg'" in str(err.value)


def test_nothing_is_created_or_read_outside_while_unpacking(tmp_path: Path) -> None:
    box = tmp_path / "box"
    (box / "a").mkdir(parents=True)
    (box / "a" / "f").write_bytes(SECRET)
    members = [
        *[(f"SPair-71k/{n}", t, b"") for n, t in CHAIN],
        ("SPair-71k/up2/made-outside/x.txt", None, b"x"),  # a folder through the chain
    ]
    (tmp_path / "mk.tar").write_bytes(_tar(members))
    with pytest.raises(UnsafeArchiveError, match="outside the target folder"):
        unpack_archive(tmp_path / "mk.tar", box / "a" / "out", member="SPair-71k")
    assert not (box / "made-outside").exists() and not (tmp_path / "made-outside").exists()
    # a hard link copies an earlier file by its archive name; re-pointing a link in that name
    # to outside must not make the copy read the file outside
    members = [
        ("SPair-71k/sub/keep", None, b"k"),
        ("SPair-71k/l", "sub", b""),
        ("SPair-71k/l/f", None, b"inside"),  # written to sub/f through l
        ("SPair-71k/r", ".", b""),
        ("SPair-71k/l", "r/..", b""),  # l now leads to box/a, where box/a/f is the secret
        ("hard:SPair-71k/copy", "SPair-71k/l/f", b""),
    ]
    (tmp_path / "hl.tar").write_bytes(_tar(members))
    try:
        unpack_archive(tmp_path / "hl.tar", box / "a" / "out2", member="SPair-71k")
    except UnsafeArchiveError:
        pass
    copy = box / "a" / "out2" / "copy"
    assert not copy.exists() or copy.read_bytes() == b"inside"


def test_download_from_a_chained_archive_fails_and_unpacks_nothing(
    minireal: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The issue's case: a SPair-71k archive whose one image is the chain's end."""
    folder = tmp_path / "src" / "SPair-71k"
    copy_spair(minireal, folder)
    victim = sorted((folder / "JPEGImages" / "fly").glob("*.jpg"))[0]
    rel = victim.relative_to(folder).as_posix()
    victim.unlink()
    (tmp_path / "secret.jpg").write_bytes(SECRET)  # where the chain leads from data/SPair-71k
    archive = tmp_path / "SPair-71k.tar.gz"
    archive.write_bytes(_tar(_chain("SPair-71k", rel), folder))
    root = tmp_path / "data"
    code = main(["download", "spair", "--root", str(root), "--from", str(archive), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert rel.split("/")[-1] in err and "outside the target folder" in err
    assert not (root / "SPair-71k").exists() and _everything(root) == []


def test_check_lists_links_leading_outside_and_reads_nothing_through_them(
    minireal: Path, tmp_path: Path
) -> None:
    root = tmp_path / "data" / "SPair-71k"
    copy_spair(minireal, root)
    victim = sorted((root / "JPEGImages" / "fly").glob("*.jpg"))[0]
    shutil.copy(victim, tmp_path / "secret.jpg")  # a valid image: only the link is wrong
    victim.unlink()
    for name, target in CHAIN:  # the same chain, made by hand
        (root / name).symlink_to(target)
    victim.symlink_to("../../up2/secret.jpg")
    assert load_spair(root)  # the loaders follow links (a data set may link its images)
    report = check_dataset("spair", root, splits=["test"], progress=False)
    assert not report.ok
    assert sorted(p.name for p, _ in report.outside) == sorted(["up", "up2", victim.name])
    text = report.format()
    assert "outside the data set folder" in text and "not checked further" in text
    assert report.images_checked == 0  # nothing was opened after the links were found


def test_check_allows_ap10k_images_linked_into_the_raw_release_beside_it(tmp_path: Path) -> None:
    from synthetic_ap10k import make_ap10k_raw

    from corr.datasets.ap10k import build_ap10k

    make_ap10k_raw(tmp_path / "data" / "ap-10k")
    build_ap10k(tmp_path / "data" / "ap-10k", tmp_path / "data" / "AP-10K", link_images=True)
    assert check_dataset("ap10k", tmp_path / "data" / "AP-10K", progress=False).ok
    # the same build from a raw release elsewhere links outside: listed
    shutil.move(tmp_path / "data" / "ap-10k", tmp_path / "elsewhere")
    build_ap10k(tmp_path / "elsewhere", tmp_path / "data" / "AP-10K", link_images=True)
    report = check_dataset("ap10k", tmp_path / "data" / "AP-10K", progress=False)
    assert not report.ok and report.outside
    assert all("may link only into" in why for _, why in report.outside)
