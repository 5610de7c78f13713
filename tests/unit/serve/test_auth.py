"""Bearer keys: from an env var and a file; anything else is 401."""

from __future__ import annotations

from pathlib import Path

import pytest

from trimroute.errors import ConfigError
from trimroute.serve.auth import ApiKeys, load_api_keys
from trimroute.serve.errors import ApiError
from trimroute.serve.settings import ServeSettings


def test_keys_from_env_and_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MY_KEYS", "a,, b ")
    path = tmp_path / "keys.txt"
    path.write_text("c\n# comment\n\n")
    assert load_api_keys(ServeSettings(api_keys_env="MY_KEYS", api_keys_file=str(path))) == ("a", "b", "c")
    monkeypatch.delenv("MY_KEYS")
    assert load_api_keys(ServeSettings(api_keys_env="MY_KEYS")) == ()


def test_unreadable_key_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="serve.api_keys_file .* cannot be read"):
        load_api_keys(ServeSettings(api_keys_file=str(tmp_path / "missing")))


@pytest.mark.parametrize("header", [None, "", "Bearer", "Basic a2V5", "Bearer wrong", "bearer keyx"])
def test_rejected(header: str | None) -> None:
    with pytest.raises(ApiError) as e:
        ApiKeys(("key",)).check(header)
    assert e.value.status == 401 and e.value.code == "invalid_api_key"


def test_accepted_and_open() -> None:
    ApiKeys(("other", "key")).check("Bearer key")
    ApiKeys(("key",)).check("bearer  key ")
    assert ApiKeys(()).open
    ApiKeys(()).check(None)
