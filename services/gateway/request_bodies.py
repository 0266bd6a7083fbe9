"""What the API's commands take: request bodies (pydantic). Unknown fields are ignored (or refused where
said): commands act on the token's account whatever the body says.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints

from shared.events import AutoPublish, Module, ProcoreId, PublishAction, PublishScope


class PublishBody(BaseModel):
    """What to publish. An account_id sent along is ignored: commands act on the token's account."""

    model_config = ConfigDict(extra="ignore")

    action: PublishAction
    scope: PublishScope
    preview_id: Annotated[str, StringConstraints(min_length=1, max_length=2048)] | None = Field(
        default=None,
        description="Force publish only, and required there: the preview_id of POST .../force-publish/preview "
        "for the same scope (refused with 409 when missing, expired, or covering other entries)",
    )


class PreviewBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    scope: PublishScope


class SetupBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    procore_company_id: ProcoreId | None
    enabled_modules: list[Module]
    two_way: bool = False
    auto_publish: AutoPublish | None = Field(
        default=None,
        description="Per module, minutes after an entry last changed before its To do or Updated state is published"
        " automatically (never Force publish); {} turns it off, null keeps it",
    )


class MappingBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    procore_id: ProcoreId | None = Field(description="The Procore entity; null clears the mapping")
    procore_project_id: ProcoreId | None = Field(default=None, description="Cost codes are mapped per Procore project")


class ConnectBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grant: Literal["client_credentials"] = Field(
        description="Your company's own Procore service account (never the app's shared credentials)"
    )
    client_id: Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
    client_secret: Annotated[SecretStr, Field(min_length=1, max_length=1024)]
    procore_company_id: ProcoreId | None = Field(
        default=None,
        description="The company the service account was created in: sent in Procore-Company-Id on the calls that "
        "prove the connection, as Procore's documentation asks of service accounts",
    )


class AutoMapBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    overwrite_manual: bool = Field(default=False, description="Also replace mappings made by hand")
