"""One declarative schema per site kind: the catalogue's validator and the backend's config.

A kind declares a subclass of :class:`SiteSchema` (a frozen pydantic model). The catalogue
validates every entry against it and the backend builds its config from the same model, so
each field, its rule, its default and its description exist once. The shared field types
in :mod:`stratoflow.sites.fields` carry their own "expected ..." wording, so the same fault
reads the same in every kind, at ``sites[i].field``.
"""

from __future__ import annotations

import types
import typing
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, ValidationError

from stratoflow.errors import Issue, TemplateError

# pydantic's own error types, in the catalogue's words (the shared field types word the rest).
_TYPE_WORDS = {
    "list_type": "a list",
    "tuple_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "bool_type": "true or false",
    "string_type": "a string",
    "int_type": "an integer",
    "float_type": "a number",
    "literal_error": "one of the listed values",
}


class SiteSchema(BaseModel):
    """A catalogue entry of one kind; the parsed model is the backend's config."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    #: Fields the catalogue checks itself, never part of the kind's model.
    CATALOGUE_FIELDS: ClassVar[tuple[str, ...]] = ("name", "kind")

    name: str = ""

    @classmethod
    def issues(cls, path: str, entry: dict[str, Any]) -> list[Issue]:
        """Every fault of a catalogue entry, each at ``<path>.<field>`` (the catalogue's
        validator; it has already reported the entry's name and kind)."""
        fields = _given(cls, entry)
        name = entry.get("name")
        try:
            cls.model_validate({**fields, "name": name if isinstance(name, str) else ""})
        except ValidationError as e:
            return [_issue(cls, path, err) for err in e.errors()]
        return []

    @classmethod
    def parse(cls, name: str, config: dict[str, Any] | None) -> Self:
        """The config of site ``name``; a fault raises TemplateError naming each field."""
        try:
            return cls.model_validate({**_given(cls, config or {}), "name": name})
        except ValidationError as e:
            raise TemplateError([_issue(cls, f"site {name}", err) for err in e.errors()]) from None

    @classmethod
    def expected_fields(cls) -> list[str]:
        return sorted(set(cls.model_fields) | set(cls.CATALOGUE_FIELDS))


def _given(schema: type[SiteSchema], entry: dict[str, Any]) -> dict[str, Any]:
    """The entry's own fields. YAML's empty value (``key:``) means "not set", so the
    default applies and a required field is reported as required."""
    return {k: v for k, v in entry.items() if k not in schema.CATALOGUE_FIELDS and v is not None}


def _issue(schema: type[BaseModel], path: str, err: Any) -> Issue:
    loc = tuple(err["loc"])
    where = path + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)
    kind = err["type"]
    if kind in ("missing", "extra_forbidden"):
        owner = _model_at(schema, loc[:-1])
        if kind == "missing":
            field = owner.model_fields.get(str(loc[-1]))
            description = field.description if field and field.description else "a value"
            return Issue(where, f"required: {description}")
        known = (
            owner.expected_fields() if issubclass(owner, SiteSchema) else sorted(owner.model_fields)
        )
        return Issue(where, f"unknown field; expected one of {', '.join(known)}")
    if kind in _TYPE_WORDS:
        return Issue(where, f"expected {_TYPE_WORDS[kind]}, got {err.get('input')!r}")
    return Issue(where, str(err["msg"]))  # the shared field types' "expected ..., got ..."


def _model_at(schema: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel]:
    """The (nested) model that owns the field at ``loc``: list indexes are skipped."""
    model = schema
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        nested = _nested_model(field.annotation) if field else None
        if nested is None:
            break
        model = nested
    return model


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated or origin in (tuple, list, typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _nested_model(arg)
            if found is not None:
                return found
    return None
