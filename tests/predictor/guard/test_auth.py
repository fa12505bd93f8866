"""predictor.guard.auth: key files, rotation, the presented key, constant-time checks."""

from __future__ import annotations

import os

import pytest

from predictor.guard.auth import AuthConfigError, KeyFile, client_id, parse_keys, presented_key


def _write(path, text: str, bump: int = 0) -> None:
    path.write_text(text)
    if bump:  # a rotation within the same mtime tick must still be seen (size/inode change too)
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + bump))


def test_parse_keys_skips_blanks_and_comments():
    assert parse_keys("a\n\n  # note\n b \n#c\n") == ["a", "b"]


def test_check_accepts_only_configured_keys(tmp_path):
    path = tmp_path / "keys"
    _write(path, "alpha\nbeta\n")
    keys = KeyFile(path)
    assert len(keys) == 2
    assert keys.check("alpha") and keys.check("beta")
    for wrong in ("", None, "alph", "alpha ", "ALPHA", "gamma"):
        assert not keys.check(wrong), wrong


def test_rotation_without_restart(tmp_path):
    path = tmp_path / "keys"
    _write(path, "old-key\n")
    keys = KeyFile(path, recheck_seconds=0)
    assert keys.check("old-key")
    _write(path, "new-key\n", bump=1_000_000)
    assert keys.check("new-key")
    assert not keys.check("old-key")


def test_kubernetes_secret_swap_through_a_symlink(tmp_path):
    """The kubelet updates a mounted Secret by re-pointing ..data: the path itself never changes."""
    for name, key in (("v1", "first"), ("v2", "second")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "api-keys").write_text(key + "\n")
    (tmp_path / "..data").symlink_to("v1")
    (tmp_path / "api-keys").symlink_to("..data/api-keys")
    keys = KeyFile(tmp_path / "api-keys", recheck_seconds=0)
    assert keys.check("first")
    (tmp_path / "..data_tmp").symlink_to("v2")
    os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
    assert keys.check("second") and not keys.check("first")


def test_a_broken_rotation_keeps_the_old_keys(tmp_path, caplog):
    path = tmp_path / "keys"
    _write(path, "kept\n")
    keys = KeyFile(path, recheck_seconds=0)
    _write(path, "# nothing left\n", bump=1_000_000)
    assert keys.check("kept")
    assert "no API key in the file" in caplog.text
    path.unlink()
    assert keys.check("kept")


@pytest.mark.parametrize("text", ["", "# only a comment\n"])
def test_start_up_refuses_a_file_without_keys(tmp_path, text):
    path = tmp_path / "keys"
    path.write_text(text)
    with pytest.raises(AuthConfigError, match="no API key"):
        KeyFile(path)


def test_start_up_refuses_a_missing_file(tmp_path):
    with pytest.raises(AuthConfigError, match="cannot read API keys"):
        KeyFile(tmp_path / "absent")


@pytest.mark.parametrize(
    ("headers", "key"),
    [
        ({"x-api-key": "k1"}, "k1"),
        ({"authorization": "Bearer k2"}, "k2"),
        ({"authorization": "bearer  k3 "}, "k3"),
        ({"x-api-key": "k1", "authorization": "Bearer k2"}, "k1"),
        ({"authorization": "Basic dTpw"}, None),
        ({"authorization": "Bearer "}, None),
        ({}, None),
    ],
)
def test_presented_key(headers, key):
    assert presented_key(headers.get) == key


def test_client_id_does_not_contain_the_key():
    cid = client_id("super-secret-key")
    assert "super-secret" not in cid and cid.startswith("key:")
    assert cid == client_id("super-secret-key") != client_id("other")
