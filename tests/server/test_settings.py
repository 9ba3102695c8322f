"""The server's settings from a hubbub.toml's [server] table."""

from __future__ import annotations

import pytest

from hubbub.config import Config, ConfigError
from hubbub.server.settings import ServerSettings, from_config


def test_server_keys_of_the_config_reach_the_settings() -> None:
    config = Config.from_dict({"server": {"head_timeout": "2s", "write_deadline": 5,
                                          "cut_off_grace": 0.25,
                                          "max_connections": 100, "send_buffer": 65536}})
    settings = from_config(config.server)
    assert (settings.head_timeout, settings.write_deadline) == (2.0, 5.0)
    assert settings.cut_off_grace == 0.25
    assert (settings.max_connections, settings.send_buffer) == (100, 65536)
    assert settings.body_timeout == ServerSettings().body_timeout  # unset: the default


@pytest.mark.parametrize("section", [{"head_timeout": 0}, {"max_connections": -1},
                                     {"linger_timeout": "soon"}, {"cut_off_grace": 0}])
def test_bad_server_limits_are_refused(section: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        Config.from_dict({"server": section})
