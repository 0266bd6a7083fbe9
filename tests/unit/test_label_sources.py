"""The Data mapping "Mapped by" column's names come from shared.labels like every other name the dashboard shows."""

from services.mapping.domain import Source
from shared import labels


def test_every_mapping_source_has_exactly_one_label_and_it_is_served():
    assert set(labels.MAPPING_SOURCES) == {s.value for s in Source}
    assert labels.all_labels()["mapping_sources"] == labels.MAPPING_SOURCES
