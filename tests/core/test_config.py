"""build_config: explicit values, then EVALSINK_<SINK>__<FIELD>; unknown keys and bad types explained."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from evalsink.config import build_config, env_prefix, env_values
from evalsink.errors import SinkConfigError
from evalsink.sink import SinkConfig


class DemoConfig(SinkConfig):
    project: str = "default-project"
    batch_rows: int = Field(default=100, ge=1)
    mode: Literal["online", "offline"] = "online"


def test_defaults() -> None:
    config = build_config("demo", DemoConfig, None, environ={})
    assert isinstance(config, DemoConfig)
    assert (config.project, config.batch_rows, config.mode, config.required) == (
        "default-project",
        100,
        "online",
        False,
    )


def test_from_a_dict() -> None:
    config = build_config("demo", DemoConfig, {"project": "p", "batch_rows": 5, "required": True}, environ={})
    assert isinstance(config, DemoConfig)
    assert (config.project, config.batch_rows, config.required) == ("p", 5, True)


def test_an_instance_is_used_as_is() -> None:
    given = DemoConfig(project="mine")
    assert build_config("demo", DemoConfig, given, environ={"EVALSINK_DEMO__PROJECT": "env"}) is given


def test_from_the_environment() -> None:
    environ = {"EVALSINK_DEMO__PROJECT": "from-env", "EVALSINK_DEMO__BATCH_ROWS": "7", "OTHER": "x"}
    config = build_config("demo", DemoConfig, None, environ=environ)
    assert isinstance(config, DemoConfig)
    assert (config.project, config.batch_rows) == ("from-env", 7)


def test_from_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVALSINK_DEMO__MODE", "offline")
    config = build_config("demo", DemoConfig, {})
    assert isinstance(config, DemoConfig)
    assert config.mode == "offline"


def test_explicit_values_win_over_the_environment() -> None:
    environ = {"EVALSINK_DEMO__PROJECT": "from-env", "EVALSINK_DEMO__BATCH_ROWS": "7"}
    config = build_config("demo", DemoConfig, {"project": "explicit"}, environ=environ)
    assert isinstance(config, DemoConfig)
    assert (config.project, config.batch_rows) == ("explicit", 7)


def test_env_prefix_of_names_with_dashes() -> None:
    assert env_prefix("recorder-remote") == "EVALSINK_RECORDER_REMOTE__"
    environ = {"EVALSINK_RECORDER_REMOTE__LABEL": "r", "EVALSINK_RECORDER__LABEL": "not this one"}
    assert env_values("recorder-remote", environ) == {"label": "r"}
    assert env_values("recorder", environ) == {"label": "not this one"}


def test_env_prefix_of_names_a_shell_variable_cannot_hold() -> None:
    """Entry-point names may hold dots (``org.sink``): ``EVALSINK_ORG.SINK__*`` cannot be set."""
    assert env_prefix("org.sink") == "EVALSINK_ORG_SINK__"
    assert env_prefix("café+1") == "EVALSINK_CAF__1__"
    assert env_values("org.sink", {"EVALSINK_ORG_SINK__LABEL": "x"}) == {"label": "x"}


def test_unknown_key_lists_the_valid_options() -> None:
    with pytest.raises(SinkConfigError) as info:
        build_config("demo", DemoConfig, {"projekt": "typo"}, environ={})
    message = str(info.value)
    assert "'demo'" in message
    assert "'projekt'" in message
    assert "valid options: batch_rows, hook_timeout, mode, project, required" in message


def test_unknown_env_key_names_the_variable() -> None:
    with pytest.raises(SinkConfigError) as info:
        build_config("demo", DemoConfig, None, environ={"EVALSINK_DEMO__PROJEKT": "typo"})
    message = str(info.value)
    assert "EVALSINK_DEMO__PROJEKT" in message
    assert "valid options: batch_rows, hook_timeout, mode, project, required" in message


def test_type_errors_are_readable() -> None:
    with pytest.raises(SinkConfigError) as info:
        build_config("demo", DemoConfig, {"batch_rows": "many", "mode": "sideways"}, environ={})
    message = str(info.value)
    assert message.startswith("sink 'demo': invalid config:")
    assert "batch_rows='many': " in message  # the option and the value given, as the user wrote them
    assert "mode='sideways': " in message
    assert "integer" in message
    assert "'online' or 'offline'" in message
    assert "\n" not in message  # one line, no pydantic traceback-style dump
    assert info.value.__cause__ is None


def test_constraint_errors_from_the_environment() -> None:
    with pytest.raises(
        SinkConfigError, match=r"EVALSINK_DEMO__BATCH_ROWS='0': Input should be greater than or equal to 1"
    ):
        build_config("demo", DemoConfig, None, environ={"EVALSINK_DEMO__BATCH_ROWS": "0"})


def test_a_misspelt_option_gets_a_suggestion() -> None:
    with pytest.raises(
        SinkConfigError, match=r"unknown option\(s\) 'batch_row' \(did you mean 'batch_rows'\?\)"
    ):
        build_config("demo", DemoConfig, {"batch_row": 5}, environ={})
    with pytest.raises(SinkConfigError, match=r"unknown option\(s\) 'zzz'; valid options"):  # nothing close
        build_config("demo", DemoConfig, {"zzz": 5}, environ={})


@pytest.mark.parametrize("bad", [["project"], "project=x", 3])
def test_config_must_be_a_mapping(bad: object) -> None:
    with pytest.raises(SinkConfigError, match=r"sink_config\['demo'\] must be a mapping or a DemoConfig"):
        build_config("demo", DemoConfig, bad, environ={})


def test_assignment_is_validated() -> None:
    config = build_config("demo", DemoConfig, None, environ={})
    with pytest.raises(ValueError, match="batch_rows"):
        config.batch_rows = 0  # type: ignore[attr-defined]


class SecretConfig(SinkConfig):
    token: SecretStr | None = None
    endpoint: Literal["a", "b"] = "a"


def test_a_bad_secret_is_not_echoed_in_the_error() -> None:
    with pytest.raises(SinkConfigError) as info:
        build_config("demo", SecretConfig, {"token": ["hf_leaked_value"], "endpoint": "c"}, environ={})
    message = str(info.value)
    assert "hf_leaked_value" not in message
    assert "token: Input should be a valid string" in message
    assert "endpoint='c': " in message  # other options still show what was given


class _Containers(SinkConfig):
    tags: list[str] | None = None
    limits: dict[str, int] = Field(default_factory=dict)
    title: str = ""


def test_list_and_dict_fields_take_json_from_the_environment() -> None:
    """They could not be set from the environment at all: pydantic refuses a string there."""
    config = build_config(
        "box",
        _Containers,
        None,
        {
            "EVALSINK_BOX__TAGS": '["a", "b"]',
            "EVALSINK_BOX__LIMITS": '{"k": 1}',
            "EVALSINK_BOX__TITLE": "[draft",
        },
    )
    assert isinstance(config, _Containers)
    assert (config.tags, config.limits, config.title) == (["a", "b"], {"k": 1}, "[draft")  # text stays text
    # not quoted: what in text that is not JSON is a credential cannot be told
    with pytest.raises(SinkConfigError, match=r"invalid config: EVALSINK_BOX__LIMITS: not valid JSON \("):
        build_config("box", _Containers, None, {"EVALSINK_BOX__LIMITS": "{k: 1"})


def test_a_sinks_own_check_reads_as_the_sink_wrote_it() -> None:
    """A ValueError from a sink's validator came out as "config: Value error, ..." (pydantic's
    wording around the sentence the sink wrote for the user)."""
    from pydantic import field_validator, model_validator

    class Checked(SinkConfig):
        project: str | None = None
        url: str = "http://x"

        @field_validator("url")
        @classmethod
        def _http(cls, value: str) -> str:
            if not value.startswith("http"):
                raise ValueError("give an http(s) URL")
            return value

        @model_validator(mode="after")
        def _needs_project(self) -> Checked:
            if self.project is None:
                raise ValueError("the checked sink needs a project: set EVALSINK_CHECKED__PROJECT")
            return self

    with pytest.raises(SinkConfigError) as info:
        build_config("checked", Checked, {}, environ={})
    assert str(info.value) == (
        "sink 'checked': invalid config: the checked sink needs a project: set EVALSINK_CHECKED__PROJECT"
    )
    with pytest.raises(SinkConfigError) as info:
        build_config("checked", Checked, {"project": "p", "url": "ftp://x"}, environ={})
    assert str(info.value) == "sink 'checked': invalid config: url='ftp://x': give an http(s) URL"


class _Auth(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str
    password: SecretStr


class _Plain(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str


class _Nested(SinkConfig):
    auth: _Auth | None = None
    auths: list[_Auth] = Field(default_factory=list)
    by_host: dict[str, _Auth | None] = Field(default_factory=dict)
    plain: _Plain | None = None
    endpoint: str = Field(default="https://x", pattern=r"^https://")


def test_a_nested_model_field_takes_json_from_the_environment() -> None:
    """A model field was refused from the environment ("Input should be a valid dictionary or
    instance of _Auth"): only list and dict fields had their JSON decoded."""
    config = build_config("nest", _Nested, None, {"EVALSINK_NEST__AUTH": '{"user": "u", "password": "p"}'})
    assert isinstance(config, _Nested)
    assert config.auth is not None
    assert (config.auth.user, config.auth.password.get_secret_value()) == ("u", "p")


@pytest.mark.parametrize("key", ["auth", "auths", "by_host"])
def test_a_value_whose_field_holds_a_nested_secret_is_not_echoed(key: str) -> None:
    """The secret check looked at the top-level type only: a nested model's password was printed
    with the rest of the value that failed to validate."""
    with pytest.raises(SinkConfigError) as info:
        build_config("nest", _Nested, {key: "me LEAKED_PW", "plain": 3}, environ={})
    message = str(info.value)
    assert "LEAKED_PW" not in message
    assert f"{key}: " in message
    assert "plain=3: " in message  # a nested model without secrets still shows what was given
    with pytest.raises(SinkConfigError) as info:
        build_config("nest", _Nested, None, {f"EVALSINK_NEST__{key.upper()}": "LEAKED_PW"})
    assert "LEAKED_PW" not in str(info.value)


def test_a_urls_password_is_not_echoed_in_an_error() -> None:
    with pytest.raises(SinkConfigError) as info:
        build_config("nest", _Nested, {"endpoint": "http://alice:URL_PW@host/api"}, environ={})
    message = str(info.value)
    assert "URL_PW" not in message
    assert "endpoint='http://alice:**********@host/api': " in message


def test_values_that_may_hold_a_credential_are_not_quoted_in_errors() -> None:
    """An option named like a secret (a plain ``str`` ``api_key``, which the manifest leaves out
    too) and a dict option's text that did not parse were quoted whole."""
    from pydantic import Field

    class ThirdParty(SinkConfig):
        api_key: str | None = Field(default=None, pattern=r"^sk-")
        headers: dict[str, str] = Field(default_factory=dict)
        retries: int = 1

    for explicit, environ in [
        ({"api_key": "hunter2-SECRET"}, {}),
        (None, {"EVALSINK_TP__HEADERS": '{"Authorization": "Bearer SECRET"'}),  # a brace missing
    ]:
        with pytest.raises(SinkConfigError) as info:
            build_config("tp", ThirdParty, explicit, environ=environ)
        assert "SECRET" not in str(info.value)
    with pytest.raises(SinkConfigError, match=r"retries='many': Input should be a valid integer"):
        build_config("tp", ThirdParty, {"retries": "many"}, environ={})  # other values still quoted
