"""The HTTP API's request and response bodies (pydantic; published in /openapi.json)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator


class PredictRequest(BaseModel):
    """One query: its items either prepared (dense + sparse) or as raw Criteo fields."""

    model_config = ConfigDict(extra="forbid")

    id: str | int | None = Field(None, description="echoed back in the answer")
    dense: list[list[float]] | None = Field(
        None, description="[items, dense features]: prepared values, already log(1 + x)"
    )
    sparse: list[list[StrictInt | list[StrictInt]]] | None = Field(
        None,
        description="[items, tables]: per-table ids, 0 = missing/rare, < table rows; a "
        "multi-hot (bag) table takes a list of ids (an id alone is a bag of one, [] an empty "
        "bag)",
    )
    raw: list[list[str | int | float | None]] | None = Field(
        None,
        description="[items, 13 + 26]: raw Criteo fields without the label (integers, then "
        "hex categorical values); unknown values map to id 0",
    )

    @model_validator(mode="after")
    def one_input_kind(self) -> PredictRequest:
        prepared = self.dense is not None or self.sparse is not None
        if prepared and self.raw is not None:
            raise ValueError("send either dense + sparse or raw, not both")
        if prepared and (self.dense is None or self.sparse is None):
            raise ValueError("prepared inputs need both dense and sparse")
        if not prepared and self.raw is None:
            raise ValueError("send dense + sparse (prepared ids) or raw (Criteo fields)")
        return self

    @property
    def items(self) -> int:
        return len(self.raw) if self.raw is not None else len(self.dense)


class PredictResponse(BaseModel):
    id: str | int | None = None
    predictions: list[float] = Field(description="click probability per item")
    path: str = Field(description="the serving path that computed them, e.g. table@cpu")
    items: int
    queue_ms: float = Field(description="arrival -> start of its batch")
    compute_ms: float = Field(description="model time of the batch")
    latency_ms: float = Field(description="arrival -> answer, as the server measured it")


class ErrorResponse(BaseModel):
    detail: str


class Health(BaseModel):
    status: str = Field(
        description="ok; degraded while a model worker is down (its queries get 503); "
        "draining during shutdown"
    )
    queue: int
    policy: str
    workers: dict[str, dict] = Field(
        default_factory=dict,
        description="each device's model worker: state (up, restarting) and restarts so far",
    )
