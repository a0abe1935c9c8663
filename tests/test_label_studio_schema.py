from __future__ import annotations

import pytest

from automl.records import Proposal
from connectors.label_studio_schema import LabelConfigError, parse_label_config

CONFIG = """
<View>
  <Text name="text" value="$text"/>
  <Taxonomy name="subject" toName="text">
    <Choice value="Education" alias="ED">
      <Choice value="Schools" alias="ED1"/>
      <Choice value="Other"/>
    </Choice>
    <Choice value="Health" alias="HE">
      <Choice value="Other"/>
    </Choice>
  </Taxonomy>
  <Choices name="population" toName="text" choice="single">
    <View><Choice value="Children" alias="CH"/><Choice value="Elderly"/></View>
  </Choices>
  <Choices name="tags" toName="text" choice="multiple"><Choice value="a"/><Choice value="b"/></Choices>
</View>
"""


def test_controls_become_facets_and_paths_identify_nodes():
    schema = parse_label_config(CONFIG)
    tax = schema.taxonomy()
    assert set(tax.facets) == {"subject", "population", "tags"}
    # "Other" twice, told apart by its path; aliases are the keys.
    assert tax.nodes["subject:ED/Other"].parent == "subject:ED" and tax.nodes["subject:HE/Other"].level == 2
    assert tax.nodes["subject:ED/ED1"].name == "Schools" and tax.nodes["population:CH"].level == 1
    assert schema.text_keys == {"text"}
    assert schema.controls["population"].single and not schema.controls["tags"].single


def test_results_to_codes_and_back():
    schema = parse_label_config(CONFIG)
    unknown: list[str] = []
    human = [
        {"from_name": "subject", "type": "taxonomy", "value": {"taxonomy": [["ED", "ED1"], ["HE"], ["XX"]]}},
        {"from_name": "population", "type": "choices", "value": {"choices": ["CH"]}},
        {"from_name": "comment", "type": "textarea", "value": {"text": ["hi"]}},
    ]
    assert schema.codes_of(human, unknown) == {"subject:ED/ED1", "subject:HE", "population:CH"}
    assert unknown == ["subject: XX"]
    result = schema.result([
        Proposal("subject:ED", 0.9, "model"), Proposal("subject:ED/ED1", 0.8, "model"),
        Proposal("subject:HE", 0.6, "keyword"), Proposal("population:Elderly", 0.4, "model"),
        Proposal("population:CH", 0.7, "model"), Proposal("tags:a", 0.5, "model"), Proposal("tags:b", 0.6, "model"),
    ])
    by_name = {r["from_name"]: r for r in result}
    assert by_name["subject"]["value"] == {"taxonomy": [["ED", "ED1"], ["HE"]]}  # deepest paths only
    assert by_name["population"]["value"] == {"choices": ["CH"]}  # single choice: the most confident
    assert by_name["tags"]["value"] == {"choices": ["b", "a"]}
    assert by_name["subject"]["to_name"] == "text" and by_name["subject"]["type"] == "taxonomy"


@pytest.mark.parametrize("config, message", [
    ("<View><Text name='t' value='$t'/></View>", "no <Taxonomy> or <Choices>"),
    ("<View><Choices name='c' toName='x'><Choice value='a'/></Choices></View>", "not a data object"),
    ("<View", "not valid XML"),
    ("<View><Text name='t' value='$t'/><Choices name='c' toName='t'><Choice value='a'/><Choice value='a'/>"
     "</Choices></View>", "two choices"),
])
def test_bad_configs(config, message):
    with pytest.raises(LabelConfigError, match=message):
        parse_label_config(config)


def test_a_test_files_codes_resolve_to_the_config_nodes():
    from automl.taxonomy import CodeNotFound

    tax = parse_label_config(CONFIG).taxonomy()
    assert tax.resolve("ED1") == "subject:ED/ED1" and tax.resolve("ED/Other") == "subject:ED/Other"
    assert tax.resolve("subject:HE") == "subject:HE" and tax.resolve("CH") == "population:CH"
    with pytest.raises(CodeNotFound) as error:  # "Other" is under ED and under HE
        tax.resolve("Other")
    assert error.value.candidates == ["subject:ED/Other", "subject:HE/Other"]


def test_the_config_made_from_a_taxonomy_names_each_facet_and_tells_like_names_apart(tmp_path):
    from automl.taxonomy_file import load_taxonomy
    from connectors.label_studio_setup import label_config_from_taxonomy

    path = tmp_path / "t.csv"
    path.write_text("code,name,parent_code,facet\nED,Education,,subject\nED9,Other,ED,\nHE,Health,,subject\n"
                    "HE9,Other,HE,\nBE,People,,population\nBE1,Children,BE,\n")
    config = label_config_from_taxonomy(load_taxonomy(path))
    assert '<Header value="Population" />' in config and '<Header value="Subject" />' in config
    assert config.index('<Header value="Subject" />') < config.index('<Taxonomy name="subject"')
    # Two "Other" in subject: its chips show the path; population's names are all different.
    assert '<Taxonomy name="subject" toName="text" showFullPath="true" pathSeparator=" / ">' in config
    assert '<Taxonomy name="population" toName="text">' in config
    assert set(parse_label_config(config).controls) == {"subject", "population"}
