"""One list of user-facing names (shared.labels): every key the API uses has exactly one label there."""

from services.gateway.schemas import EntryStatus
from shared import labels
from shared.events import Module, Permission, ProcoreEntity, PublishAction, ReferenceKind


def test_every_enum_member_has_exactly_one_label():
    assert set(labels.STATUSES) == {s.value for s in EntryStatus}
    assert set(labels.MODULES) == {m.value for m in Module}
    assert set(labels.PERMISSIONS) == {p.value for p in Permission}
    assert list(labels.ENTITIES) == [e.value for e in ProcoreEntity]
    assert set(labels.ENTITY_SINGULAR) == {e.value for e in ProcoreEntity}
    assert set(labels.MOBICLOCKS_KINDS) == {k.value for k in ReferenceKind}
    assert set(labels.ACTIONS) == {a.value for a in PublishAction}
    assert set(labels.COLUMNS) == {m.value for m in Module}
    assert set(labels.REASONS) == {e.value for e in ProcoreEntity}


def test_the_help_articles_words():
    assert labels.PERMISSIONS["procore.mapping"] == "Procore Connect data mapping"
    assert labels.STATUSES["todo"] == "To do"
    assert labels.STATUSES["non_publishable"] == "Non publishable"
    assert labels.ENTITIES["payroll_type"] == "Payroll types"


def test_permission_refusals_use_the_label_not_the_key():
    from shared.events import permission_refusal

    refusal = permission_refusal(Permission.MAPPING, ["procore.publish"])
    assert refusal is not None
    assert "Procore Connect data mapping" in refusal
    assert "procore.mapping" not in refusal


def test_each_reason_is_traced_back_to_the_tab_that_fixes_it():
    for entity, template in labels.REASONS.items():
        text = template.format(label="03-300 Concrete", project="Tower A")
        assert labels.reason_entity(text) == entity
        assert labels.reason_entity(f"{text}: it no longer exists in Procore") == entity
    assert labels.reason_entity(labels.NOT_CONNECTED) is None
    fractional = labels.FRACTIONAL_QUANTITY.format(units="1.5", unit="m3", label="03-300 Concrete")
    assert labels.reason_entity(fractional) is None


def test_labels_served_have_every_group_the_contract_names():
    served = labels.all_labels()
    for key in ("statuses", "modules", "permissions", "entities", "actions", "connection_methods"):
        assert served[key], key


def test_an_empty_mapping_tab_says_why():
    from services.gateway.mapping_rules import empty_tab_message
    from shared.events import ProcoreEntity

    assert empty_tab_message(ProcoreEntity.CLASSIFICATION, False, True, None) == (
        "No pay classes in MobiClocks yet: they appear here as soon as MobiClocks has them."
    )
    assert "Select Sync" in str(empty_tab_message(ProcoreEntity.VENDOR, True, False, None))
    assert empty_tab_message(ProcoreEntity.VENDOR, True, True, {"synced": 1}) is None


def test_every_history_step_has_words():
    from services.aggregator.domain import REJECTED
    from services.aggregator.handlers import PROCORE_CHANGE, REDRIVEN
    from shared.events import ProcoreOperation, PublishOutcome

    assert set(labels.HISTORY_ACTIONS) == {a.value for a in PublishAction} | {"result", REDRIVEN, PROCORE_CHANGE}
    assert set(labels.HISTORY_OUTCOMES) == {o.value for o in PublishOutcome} | {REJECTED, ""}
    assert set(labels.HISTORY_OPERATIONS) == {o.value for o in ProcoreOperation}
    assert {"history", "history_actions", "history_outcomes", "history_operations"} <= set(labels.all_labels())
