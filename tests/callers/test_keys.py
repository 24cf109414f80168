"""Caller keys: hashed at rest, checked in constant time, the key file and the CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from app.callers import cli
from app.callers.keys import (
    CallerKey,
    KeyFileError,
    KeyRing,
    digest,
    key_id_of,
    new_secret,
    read_key_file,
    write_key_file,
)


def key(key_id: str, secret: str, **fields: object) -> CallerKey:
    return CallerKey.model_validate({"id": key_id, "hash": digest(secret), **fields})


def test_a_secret_names_its_key_and_has_256_bits() -> None:
    secret = new_secret("team-a")
    assert secret.startswith("igw_team-a_") and len(secret.split("_", 2)[2]) == 43
    assert key_id_of(secret) == "team-a"
    assert new_secret("team-a") != secret
    assert [key_id_of(s) for s in ("team-a", "igw_", "igw_x", "igw__y", "Bearer x")] == [None] * 5


def test_verify_accepts_only_the_exact_live_secret() -> None:
    good, other = new_secret("a"), new_secret("b")
    ring = KeyRing([key("a", good), key("b", other, revoked=True)])
    assert ring.verify(good) is not None and ring.verify(good).id == "a"  # type: ignore[union-attr]
    assert ring.verify(good + "x") is None
    assert ring.verify(good[:-1] + ("A" if good[-1] != "A" else "B")) is None
    assert ring.verify(other) is None  # revoked
    assert ring.verify(new_secret("nobody")) is None
    assert ring.verify("not even the shape") is None


def test_duplicate_ids_fail() -> None:
    with pytest.raises(KeyFileError, match="twice"):
        KeyRing([key("a", "s1"), key("a", "s2")])


def test_key_scopes() -> None:
    scoped = key("a", "s", operations=["upscale"], providers=["local", "venice"])
    assert scoped.may("upscale") and not scoped.may("generate")
    assert scoped.may_use("local") and not scoped.may_use("vertex")
    anything = key("b", "s")
    assert anything.may("generate") and anything.may_use("deepimage")
    with pytest.raises(ValueError, match="unknown provider"):
        key("c", "s", providers=["openai"])
    with pytest.raises(ValueError, match="unknown operation"):
        key("c", "s", operations=["edit"])


def test_key_file_round_trip_is_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    assert read_key_file(path) == []
    keys = [key("a", "s1", budget_daily_usd=0.1), key("b", "s2", rate_limit={"requests": 5})]
    write_key_file(path, keys)
    assert read_key_file(path) == keys
    assert os.stat(path).st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "JSONDecodeError"),
        ('{"nokeys": []}', "KeyError"),
        ('{"keys": [{"id": "a"}]}', "keys.0.hash|hash"),
        ('{"keys": [{"id": "a", "hash": "plain-secret"}]}', "hash"),
    ],
)
def test_a_broken_key_file_is_named_without_its_content(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "keys.json"
    path.write_text(text)
    with pytest.raises(KeyFileError, match=message) as caught:
        read_key_file(path)
    assert "plain-secret" not in str(caught.value)


def test_cli_create_prints_the_secret_once_and_stores_its_hash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "keys.json"
    argv = ["--file", str(path), "create", "team-a", "--operations", "upscale"]
    assert cli.main([*argv, "--rate-limit", "5/10", "--daily-usd", "0.1"]) == 0
    secret = capsys.readouterr().out.strip()
    stored = path.read_text()
    assert secret not in stored and digest(secret) in stored
    [created] = read_key_file(path)
    assert created.operations == ("upscale",) and created.rate_limit is not None
    assert (created.rate_limit.requests, created.rate_limit.window_s) == (5, 10)
    assert created.budget_daily_usd == 0.1
    assert KeyRing([created]).verify(secret) == created

    assert cli.main(["--file", str(path), "list"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["id"] == "team-a" and "hash" not in listed and secret not in str(listed)

    assert cli.main([*argv]) == 1  # the id exists
    assert "exists" in capsys.readouterr().err
    assert cli.main(["--file", str(path), "revoke", "team-a"]) == 0
    assert KeyRing(read_key_file(path)).verify(secret) is None
    assert cli.main(["--file", str(path), "revoke", "nobody"]) == 1


@pytest.mark.parametrize(
    "args",
    [
        ["create", "Bad_Id"],
        ["create", "a", "--rate-limit", "x/y"],
        ["create", "a", "--providers", "x"],
    ],
)
def test_cli_refuses_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    assert cli.main(["--file", str(tmp_path / "k.json"), *args]) == 1
    assert capsys.readouterr().err.startswith("error: ")
    assert not (tmp_path / "k.json").exists()


def test_cli_needs_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["list"]) == 2
    assert "IMAGE_GATEWAY_CALLERS__KEYS_FILE" in capsys.readouterr().err
