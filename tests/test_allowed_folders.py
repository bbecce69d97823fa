"""The one "inside the allowed folders" rule (workers/pipeline/allowed_folders.py) on a
small tree of folders, files and links."""
import os

import pytest

from workers.pipeline.allowed_folders import OutsideAllowedFolders, allowed_real_path, folders_of


@pytest.fixture
def tree(tmp_path):
    """allowed/ with a file, a sub-folder, a link to a file inside and links that lead out;
    elsewhere/ with a secret; a link to allowed/ from outside it."""
    allowed, elsewhere = tmp_path / "allowed", tmp_path / "elsewhere"
    (allowed / "sub").mkdir(parents=True)
    elsewhere.mkdir()
    (allowed / "clip.mp4").write_bytes(b"video")
    (elsewhere / "secret.mp4").write_bytes(b"secret")
    (allowed / "sub" / "same.mp4").symlink_to(allowed / "clip.mp4")
    (allowed / "out.mp4").symlink_to(elsewhere / "secret.mp4")
    (allowed / "out-folder").symlink_to(elsewhere)
    (tmp_path / "linked-root").symlink_to(allowed)
    return tmp_path


def test_a_path_inside_gives_its_real_path(tree):
    allowed = tree / "allowed"
    assert allowed_real_path(allowed / "clip.mp4", [allowed]) == allowed / "clip.mp4"
    assert allowed_real_path(allowed / "sub" / "same.mp4", [allowed]) == allowed / "clip.mp4"  # a link that stays
    assert allowed_real_path(allowed, [allowed]) == allowed  # the folder itself
    assert allowed_real_path(allowed / "sub" / ".." / "clip.mp4", [allowed]) == allowed / "clip.mp4"
    assert allowed_real_path(allowed / "not-yet.mp4", [allowed]) == allowed / "not-yet.mp4"  # need not exist
    assert allowed_real_path(str(allowed / "clip.mp4"), [str(tree / "elsewhere"), str(allowed)]) == \
        allowed / "clip.mp4"


def test_folders_are_resolved_too(tree):
    assert allowed_real_path(tree / "allowed" / "clip.mp4", [tree / "linked-root"]) == tree / "allowed" / "clip.mp4"
    assert allowed_real_path(tree / "linked-root" / "clip.mp4", [tree / "allowed"]) == tree / "allowed" / "clip.mp4"


@pytest.mark.parametrize("name", ["out.mp4", "out-folder/secret.mp4"])
def test_a_link_that_leads_out_is_refused_and_said_to_be_one(tree, name):
    with pytest.raises(OutsideAllowedFolders) as refused:
        allowed_real_path(tree / "allowed" / name, [tree / "allowed"], "the folders ingested from")
    assert refused.value.reason == "a link that leads outside the folders ingested from"
    assert refused.value.real == str(tree / "elsewhere" / "secret.mp4")
    assert str(refused.value) == f"{tree / 'allowed' / name}: a link that leads outside the folders ingested from"


def test_a_path_outside_is_refused(tree):
    for path in [tree / "elsewhere" / "secret.mp4", tree / "allowed" / ".." / "elsewhere", tree / "allowed-not",
                 tree]:
        with pytest.raises(OutsideAllowedFolders) as refused:
            allowed_real_path(path, [tree / "allowed"])
        assert refused.value.reason == "outside the allowed folders", path
    with pytest.raises(OutsideAllowedFolders, match="outside the allowed folders \\(there are none\\)"):
        allowed_real_path(tree / "allowed" / "clip.mp4", [])


def test_a_symlink_loop_is_not_an_error_here(tree):
    loop = tree / "allowed" / "loop"
    loop.symlink_to(loop)
    assert allowed_real_path(loop, [tree / "allowed"]).parent == tree / "allowed"  # its open will fail


def test_the_folders_an_ingest_names(tree):
    allowed = tree / "allowed"
    named = [str(allowed / "clip.mp4"), str(allowed / "sub"), str(allowed / "sub" / "same.mp4"), "~"]
    assert folders_of(named) == [str(allowed), str(allowed / "sub"), os.path.expanduser("~")]
