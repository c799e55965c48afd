"""The INDIGO routes that change deployments: create (TOSCA text or a catalogue name),
delete, and the reset of a delete stuck in progress."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Path, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field, field_validator

from stratoflow.api.actions import (
    delete_as,
    invalid,
    reset_delete_as,
    template_faults,
)
from stratoflow.api.auth import Caller, authenticated_caller
from stratoflow.api.indigo.views import deployment_resource

# A template is at most as large as a template file may be (stratoflow.tosca.loader).
MAX_TEMPLATE_CHARS = 1024 * 1024
MAX_TIMEOUT_MINS = 60 * 24 * 365  # a year

router = APIRouter(tags=["deployments"])
Authenticated = Depends(authenticated_caller)


class CreateDeployment(BaseModel):
    """INDIGO's ``DeploymentRequest``. Unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")

    template: str = Field(
        min_length=1,
        max_length=MAX_TEMPLATE_CHARS,
        description="The TOSCA template as text, or a catalogue template's file name "
        "(`GET /stratoflow/templates`). A template given as text may use artifacts of the "
        "bundled type library and the catalogue only.",
    )
    parameters: dict[str, Any] = Field(
        default_factory=dict, description="The template's inputs; omitted ones take defaults."
    )
    callback: str | None = Field(
        None,
        max_length=2048,
        description="An http(s) URL that gets the deployment's JSON at each final state.",
    )
    timeout_mins: int | None = Field(
        None, alias="timeoutMins", ge=1, le=MAX_TIMEOUT_MINS, description="Bounds the whole create."
    )
    provider_timeout_mins: int | None = Field(
        None,
        alias="providerTimeoutMins",
        ge=1,
        le=MAX_TIMEOUT_MINS,
        description="Bounds one site's attempt; not more than `timeoutMins`.",
    )
    max_providers_retry: int | None = Field(
        None, alias="maxProvidersRetry", ge=1, le=100, description="Sites to try at most."
    )
    keep_last_attempt: bool = Field(
        False,
        alias="keepLastAttempt",
        description="When every site fails, keep the last attempt's resources for debugging.",
    )
    user_group: str | None = Field(None, alias="userGroup", min_length=1, max_length=256)

    @field_validator("callback")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        return value

    def options(self) -> dict[str, Any]:
        """What the deployment keeps besides its inputs (``Deployment.options``)."""
        options = {
            "keep_last_attempt": self.keep_last_attempt or None,
            "callback": self.callback,
            "timeout_mins": self.timeout_mins,
            "provider_timeout_mins": self.provider_timeout_mins,
            "max_providers_retry": self.max_providers_retry,
            "user_group": self.user_group,
        }
        return {k: v for k, v in options.items() if v is not None}


def _compile(body: CreateDeployment) -> tuple[Any, Any]:
    """(topology, plan) of the body's template, registered; 422 naming each fault."""
    from stratoflow.api.catalogue import TEMPLATE_NAME, BadTemplateName, resolve_template
    from stratoflow.errors import TemplateError
    from stratoflow.registration import register_template, register_text

    named = "\n" not in body.template and TEMPLATE_NAME.match(body.template.strip())
    try:
        if named:
            path = resolve_template(body.template.strip())
            return register_template(str(path), body.parameters)
        return register_text(body.template, body.parameters)
    except BadTemplateName as exc:
        raise invalid([(["body", "template"], str(exc))]) from None
    except TemplateError as exc:
        raise template_faults(exc) from None


@router.post(
    "/deployments",
    status_code=status.HTTP_201_CREATED,
    responses={
        422: {"description": "an invalid field, or template faults each by its TOSCA path"},
    },
)
def create_deployment(
    request: Request, response: Response, body: CreateDeployment, caller: Caller = Authenticated
) -> dict[str, Any]:
    """Create a deployment from a TOSCA template. It answers once the deployment is
    recorded, as INDIGO does: its run is started in the background, as the caller, once
    Airflow has parsed its DAG. A failure to start (Airflow refuses the caller, the DAG
    never appears) makes it CREATE_FAILED with the reason."""
    from stratoflow.api.starter import starter

    if (
        body.provider_timeout_mins is not None
        and body.timeout_mins is not None
        and body.provider_timeout_mins > body.timeout_mins
    ):
        raise invalid([(["body", "providerTimeoutMins"], "must not be more than timeoutMins")])
    topology, plan = _compile(body)
    deployment = starter.submit(
        plan, topology.bound_inputs, caller.name, caller.token, body.options()
    )
    url = f"{request.url.replace(query='')}/{deployment.id}"
    response.headers["Location"] = url
    return deployment_resource(deployment, url)


@router.delete(
    "/deployments/{deployment_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        404: {"description": "no such deployment"},
        403: {"description": "not the caller's deployment, or Airflow refused the run"},
        409: {"description": "a delete is already running, or the deployment is deleted"},
        502: {"description": "Airflow could not be reached or failed"},
    },
)
def delete_deployment(
    deployment_id: str = Path(max_length=64), caller: Caller = Authenticated
) -> Response:
    """Delete the deployment: it is DELETE_IN_PROGRESS at once, and a run of the delete
    DAG removes everything it holds. Only its owner may delete it."""
    delete_as(deployment_id, caller)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


class PatchDeployment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: str = Field(
        description="Only `DELETE_FAILED`: reset a delete stuck in progress so that it can "
        "be asked again.",
        pattern="^DELETE_FAILED$",
    )


@router.patch(
    "/deployments/{deployment_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        404: {"description": "no such deployment"},
        403: {"description": "not the caller's deployment"},
        409: {"description": "the deployment is not DELETE_IN_PROGRESS"},
    },
)
def reset_deployment(
    body: PatchDeployment,
    deployment_id: str = Path(max_length=64),
    caller: Caller = Authenticated,
) -> Response:
    """Reset a delete stuck in DELETE_IN_PROGRESS to DELETE_FAILED (INDIGO's PATCH)."""
    reset_delete_as(deployment_id, caller)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
