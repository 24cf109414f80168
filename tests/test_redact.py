"""The one redactor: secrets masked before anything is clipped."""

from __future__ import annotations

from app.redact import clip, redact


def test_secrets_and_urls_are_masked() -> None:
    text = "key sk-123 refused; see https://s3.example/x?sig=abc for details"
    assert redact(text, ["sk-123", None, ""]) == "key *** refused; see <url> for details"


def test_masking_happens_before_clipping_so_no_part_of_a_secret_survives() -> None:
    secret = "SECRET-TOKEN-0123456789"
    text = "x" * 290 + secret
    out = redact(text, [secret])
    assert "SECRET" not in out and out == "x" * 290 + "***"
    assert redact("y" * 280 + secret, [secret], limit=285) == "y" * 280 + "***"


def test_clip_marks_a_cut() -> None:
    assert clip("abcdef", 3) == "abc…" and clip("abc", 3) == "abc"
