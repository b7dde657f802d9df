import yaml
from hypothesis import given
from hypothesis import strategies as st

from engine.lineage import content_sha
from engine.packs import decode_pack
from packs import OFFICIAL

documents = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=10,
)


@given(documents)
def test_key_order_does_not_change_the_hash(document):
    def reverse(value):
        if isinstance(value, dict):
            return {k: reverse(value[k]) for k in reversed(list(value))}
        if isinstance(value, list):
            return [reverse(v) for v in value]
        return value

    assert content_sha(reverse(document)) == content_sha(document)


def test_yaml_formatting_does_not_change_the_pack_sha():
    text = (OFFICIAL / "swingsigma" / "pack.yaml").read_text()
    document = yaml.safe_load(text)
    reformatted = yaml.safe_dump(dict(reversed(list(document.items()))), default_flow_style=True, width=60)
    assert decode_pack(reformatted).sha == decode_pack(text).sha


def test_changed_content_changes_the_hash():
    text = (OFFICIAL / "swingsigma" / "pack.yaml").read_text()
    assert decode_pack(text.replace("rsi: {period: 14}", "rsi: {period: 15}")).sha != decode_pack(text).sha
