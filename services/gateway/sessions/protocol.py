"""Request and response schemas of the templates and sessions endpoints."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.common import results
from services.common.schemas import MAX_SCHEMA_CHARS, schema_problem
from services.gateway.generate.protocol import MAX_PROMPT_CHARS, MAX_TOKENS, StopString
from services.gateway.jobs.protocol import JobFields, check_job_fields

Name = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
OptionKey = Annotated[str, Field(min_length=1, max_length=100)]
SessionCode = Annotated[str, Field(min_length=4, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
VersionStatus = Literal["DRAFT", "PUBLISHED", "ARCHIVED"]


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class LlmOptions(StrictModel):
    model: str = Field(min_length=1, max_length=128)
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_TOKENS)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 2)
    stop: list[StopString] | None = Field(default=None, max_length=4)
    # Knowledge bases a run retrieves from (their chunks go into the system prompt, numbered).
    knowledge_bases: list[str] | None = Field(default=None, max_length=20)
    json_schema: dict[str, Any] | None = Field(
        default=None,
        description="A JSON Schema the result must validate against: the run asks the model for JSON "
        "under it (enforced while decoding on the local engine), checks it and retries once, and the "
        "result carries it parsed as json_result beside its text in llm_result.",
    )

    @field_validator("json_schema")
    @classmethod
    def _a_json_schema(cls, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        if schema is None:
            return None
        if len(json.dumps(schema)) > MAX_SCHEMA_CHARS:
            raise ValueError(f"the JSON schema is over {MAX_SCHEMA_CHARS} characters")
        problem = schema_problem(schema)
        if problem:
            raise ValueError(problem)
        return schema


class VersionOption(StrictModel):
    key: OptionKey
    label: str = Field(min_length=1, max_length=2_000)


class CreateTemplate(StrictModel):
    name: Name
    description: str = Field(default="", max_length=2_000)


class CreateVersion(StrictModel):
    system_prompt: str | None = Field(default=None, max_length=MAX_PROMPT_CHARS)
    user_prompt_template: str | None = Field(
        default=None,
        max_length=MAX_PROMPT_CHARS,
        description="Jinja template of the user turn; sees `answers` (key, label, value). "
        "Omitted: one line per answer.",
    )
    llm_options: LlmOptions | None = None
    options: list[VersionOption] = Field(default_factory=list, max_length=200)


class Version(BaseModel):
    template: str
    number: int
    status: VersionStatus
    system_prompt: str | None
    user_prompt_template: str | None
    llm_options: LlmOptions | None
    options: list[VersionOption]
    created_at: datetime
    published_at: datetime | None


class Template(BaseModel):
    name: str
    description: str
    created_at: datetime
    versions: list[Version]


# Version numbers are int32 on the wire; a larger one cannot exist and is refused as a bad field.
MAX_VERSION = 2**31 - 1


class CreateSession(StrictModel):
    template: Name
    version: int | None = Field(
        default=None, ge=1, le=MAX_VERSION, description="Version number; the newest PUBLISHED one if omitted."
    )
    session_code: SessionCode | None = Field(default=None, description="Made up by the mesh if omitted.")


class AnswerIn(StrictModel):
    option: OptionKey
    value: str = Field(default="", max_length=MAX_PROMPT_CHARS)


class PutAnswers(StrictModel):
    answers: list[AnswerIn] = Field(max_length=200)


class Answer(BaseModel):
    option: str
    label: str
    value: str


class Session(BaseModel):
    session_code: str
    template: str
    version: int
    version_status: VersionStatus
    answers: list[Answer]
    latest_result: results.SessionRun | None
    created_at: datetime


class RunSession(JobFields):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    force_regenerate: bool = False
    temperature: float | None = Field(
        default=None,
        ge=0,
        le=2,
        description="This run's temperature instead of the version's llm_options.temperature. Part of "
        "the inputs a stored result is reused for: another temperature is another result.",
    )
    seed: int | None = Field(
        default=None,
        ge=0,
        le=2**32 - 2,
        description="This run's seed instead of the version's (a fresh one with force_regenerate gives "
        "a new text where the version samples; at temperature 0 the text does not change). Part of the "
        "inputs a stored result is reused for.",
    )
    stream: bool = Field(default=False, description="Stream token deltas as Server-Sent Events.")
    run_async: bool = Field(
        default=False, alias="async", description="Queue the run as a durable job: 202 with its status_url."
    )

    @model_validator(mode="after")
    def _job_fields_need_async(self) -> RunSession:
        check_job_fields(self, self.run_async, self.stream)
        return self
