"""Declared query parameters: an endpoint's query string validated into a pydantic model.

An endpoint that declares its query (`route.query(Model)`, or a Connector's `query` class
attribute) has it checked at the handshake, before `on_connect`: a query that does not fit
is refused with 400 and what is wrong, so no callback sees it. The model's schema is also what
the AsyncAPI document lists as the channel's query.
"""

from __future__ import annotations

import typing
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from wsapp.datastructures import QueryParams
from wsapp.protocol import Refusal

__all__ = ["checked_query_model", "validated_query"]

M = TypeVar("M", bound=BaseModel)

#: Field types that take every value of a repeated key (`?tag=a&tag=b`).
_SEQUENCES = (list, tuple, set, frozenset)


def checked_query_model(model: Any) -> type[BaseModel]:
    """``model``, if it is a pydantic model class."""
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise TypeError(f"query() takes a pydantic model class, not {model!r}")
    return model


def validated_query(model: type[M], params: QueryParams) -> M | Refusal:
    """``params`` validated into ``model`` (a field of a sequence type gets every value of its
    key, any other field the last one), or the 400 that refuses the handshake, each error in
    its reason."""
    fields = model.model_fields
    values: dict[str, Any] = {}
    for key in params:
        found = params.getlist(key)
        field = fields.get(key)
        wants_all = field is not None and typing.get_origin(field.annotation) in _SEQUENCES
        values[key] = found if wants_all else found[-1]
    try:
        return model.model_validate(values)
    except ValidationError as error:
        lines = [
            f"{'.'.join(str(part) for part in e['loc']) or 'query'}: {e['msg']}"
            for e in error.errors(include_url=False, include_input=False)
        ]
        return Refusal(400, "invalid query: " + "; ".join(lines))
