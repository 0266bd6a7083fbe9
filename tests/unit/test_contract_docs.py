"""The committed contract documents match the code (regenerate with `make docs`)."""

import json

from devstack.docs import DOCS, render


def test_committed_contracts_are_current() -> None:
    rendered = render()
    assert sorted(rendered) == sorted(p.name for p in DOCS.glob("*.json"))
    for name, text in rendered.items():
        assert (DOCS / name).read_text() == text, f"docs/contracts/{name} is stale: run `make docs`"


def test_asyncapi_documents_every_topic() -> None:
    channels = set()
    for name, text in render().items():
        if name.startswith("asyncapi-"):
            channels |= {c["address"] for c in json.loads(text)["channels"].values()}
    for topic in (
        "mobiclocks.timelogs",
        "mobiclocks.reference",
        "publish.commands",
        "procore.publish-requests",
        "procore.publish-results",
        "mapping.commands",
        "mapping.changes",
    ):
        assert topic in channels, channels
