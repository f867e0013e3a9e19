"""FHIR XML <-> FHIR JSON, as https://hl7.org/fhir/R4/xml.html and
https://hl7.org/fhir/R4/json.html describe them.

The heavy checks run over real content: every official R4 example (JSON -> XML -> JSON),
the UK Core package's XML (XML -> JSON -> XML -> JSON) and the FHIRPath test inputs.
"""

from __future__ import annotations

import gzip
import xml.etree.ElementTree as ET
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import fhirhub.fhir.xml
from fhirhub.errors import InvalidError
from fhirhub.fhir.json import decimal_text, loads
from fhirhub.fhir.xml import dump_resource, parse_resource

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
FHIRPATH_CASES = DATA / "test-cases" / "fhirpath"
# UK Core as packaged (definitions) and as the tests keep it (examples).
UKCORE_ROOTS = {"ukcore": ROOT / "src" / "fhirhub" / "fhir" / "definitions" / "ukcore",
                "examples": DATA / "ukcore-examples"}

F = "http://hl7.org/fhir"
XHTML = "http://www.w3.org/1999/xhtml"
DIV = f'<div xmlns="{XHTML}">'


def canonical(value: Any) -> Any:
    """A value compared as its FHIR JSON text: 1.50 differs from 1.5, 60 equals 60.

    Plain dict equality would hide lost decimal digits (Decimal("1.50") == Decimal("1.5")).
    """
    if isinstance(value, dict):
        return {key: canonical(item) for key, item in value.items()}
    if isinstance(value, list):
        return [canonical(item) for item in value]
    if isinstance(value, bool):
        return value
    if isinstance(value, Decimal):
        return ("number", decimal_text(value))
    if isinstance(value, int):
        return ("number", str(value))
    return value


def patient(body: str, *, attributes: str = "") -> bytes:
    return f'<Patient xmlns="{F}"{attributes}>{body}</Patient>'.encode()


def elements(xml: bytes) -> ET.Element:
    return ET.fromstring(xml)


def round_trip(resource: dict[str, Any]) -> dict[str, Any]:
    return parse_resource(dump_resource(resource))


# -- the official R4 examples -----------------------------------------------------------

# Each exception names its reason; strict xfail tells us when the reason has gone.
R4_EXAMPLE_EXCEPTIONS = {
    ("ExampleScenario", "example"): "the packaged R4 definitions (fhirhub/fhir/definitions) "
    "lack the ExampleScenario StructureDefinition, so the element model cannot order it",
}


def _r4_examples() -> list[Any]:
    params = []
    with gzip.open(DATA / "r4-examples.ndjson.gz", "rb") as fh:
        for line in fh:
            resource = loads(line)
            key = (resource["resourceType"], resource.get("id"))
            reason = R4_EXAMPLE_EXCEPTIONS.get(key)
            marks = [pytest.mark.xfail(reason=reason, raises=InvalidError)] if reason else []
            params.append(pytest.param(resource, id=f"{key[0]}/{key[1]}", marks=marks))
    return params


R4_EXAMPLES = _r4_examples()


def test_all_773_official_r4_examples_are_collected() -> None:
    assert len(R4_EXAMPLES) == 773


@pytest.mark.parametrize("resource", R4_EXAMPLES)
def test_official_r4_example_round_trips_json_xml_json(resource: dict[str, Any]) -> None:
    assert canonical(round_trip(resource)) == canonical(resource)


@pytest.mark.parametrize("name", ["patient-example.xml", "questionnaire-example.xml"])
def test_official_xml_example_reads_as_the_official_json_example(name: str) -> None:
    from_xml = parse_resource((FHIRPATH_CASES / name).read_bytes())
    key = (from_xml["resourceType"], from_xml["id"])
    (from_json,) = [p.values[0] for p in R4_EXAMPLES
                    if (p.values[0]["resourceType"], p.values[0].get("id")) == key]
    assert canonical(from_xml) == canonical(from_json)


# -- real XML: UK Core and the FHIRPath test inputs -------------------------------------

UKCORE_EXCEPTIONS = {
    "CodeSystem-UKCore-EthnicCategoryScotland.xml": "the published file has a stray text "
    "'c' after a <display> (line 37): not FHIR XML, and refused as such",
}


def _ukcore_files() -> list[Any]:
    params = []
    for name, root in UKCORE_ROOTS.items():
        for path in sorted(root.rglob("*.xml")):
            why = UKCORE_EXCEPTIONS.get(path.name)
            marks = [pytest.mark.xfail(reason=why, raises=InvalidError)] if why else []
            params.append(pytest.param(path, id=f"{name}/{path.relative_to(root)}", marks=marks))
    return params


def assert_xml_json_xml_json_is_stable(data: bytes) -> None:
    first = parse_resource(data)
    xml = dump_resource(first)
    second = parse_resource(xml)
    assert canonical(second) == canonical(first)
    assert dump_resource(second) == xml


@pytest.mark.parametrize("path", _ukcore_files())
def test_ukcore_xml_parses_and_round_trips_stably(path: Path) -> None:
    assert_xml_json_xml_json_is_stable(path.read_bytes())


def test_ukcore_has_hundreds_of_xml_files() -> None:
    assert sum(len(list(root.rglob("*.xml"))) for root in UKCORE_ROOTS.values()) > 500


def test_stray_text_in_ukcore_codesystem_is_refused_with_its_line() -> None:
    path = UKCORE_ROOTS["ukcore"] / "codesystems" / "CodeSystem-UKCore-EthnicCategoryScotland.xml"
    with pytest.raises(InvalidError, match=r"CodeSystem\.concept\[3\] has the text 'c' \(line 37"):
        parse_resource(path.read_bytes())


# tests-fhir-r4.xml is the FHIRPath suite itself, not a resource: tested as refused below.
FHIRPATH_INPUTS = sorted(
    p.name for p in FHIRPATH_CASES.glob("*.xml") if p.name != "tests-fhir-r4.xml"
)


@pytest.mark.parametrize("name", FHIRPATH_INPUTS)
def test_fhirpath_test_input_parses_and_round_trips_stably(name: str) -> None:
    assert_xml_json_xml_json_is_stable((FHIRPATH_CASES / name).read_bytes())


def test_fhirpath_suite_file_is_refused_as_not_fhir() -> None:
    with pytest.raises(InvalidError, match=r"<tests> is in the namespace '\(none\)'.*line 2"):
        parse_resource((FHIRPATH_CASES / "tests-fhir-r4.xml").read_bytes())


# -- security: no DTD, no entities ------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
  <!ENTITY lol "lol">
  <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<Patient xmlns="http://hl7.org/fhir"><id value="&lol9;"/></Patient>"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE Patient [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Patient xmlns="http://hl7.org/fhir"><id value="x"/><name><family value="&xxe;"/></name>
</Patient>"""

PLAIN_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE Patient SYSTEM "http://example.org/fhir.dtd">
<Patient xmlns="http://hl7.org/fhir"><id value="x"/></Patient>"""


@pytest.mark.parametrize("data", [BILLION_LAUGHS, XXE, PLAIN_DTD],
                         ids=["billion-laughs", "external-entity", "external-dtd"])
def test_dtd_and_entities_are_refused(data: bytes) -> None:
    with pytest.raises(InvalidError, match="DTD") as caught:
        parse_resource(data)
    assert caught.value.issue_code == "structure"
    assert caught.value.spine_code == "INVALID_REQUEST"
    assert "root:" not in caught.value.diagnostics


def test_undeclared_html_entity_is_refused() -> None:
    data = patient(f'<text><status value="generated"/>{DIV}a&nbsp;b</div></text>')
    with pytest.raises(InvalidError, match="not well-formed XML: undefined entity"):
        parse_resource(data)


# -- malformed or foreign XML -----------------------------------------------------------


def test_malformed_xml_is_refused_with_its_line() -> None:
    with pytest.raises(InvalidError, match="not well-formed XML: mismatched tag: line 3"):
        parse_resource(patient('\n<active value="true"/>\n</name>'))


def test_empty_body_is_refused() -> None:
    with pytest.raises(InvalidError, match="not well-formed XML: no element found"):
        parse_resource(b"")


def test_root_outside_the_fhir_namespace_is_refused() -> None:
    with pytest.raises(InvalidError, match="in the namespace 'urn:other'"):
        parse_resource(b'<Patient xmlns="urn:other"/>')


def test_unknown_resource_type_is_refused() -> None:
    with pytest.raises(InvalidError, match="<Patients> is not an R4 resource type"):
        parse_resource(f'<Patients xmlns="{F}"/>'.encode())


def test_abstract_type_is_not_a_resource() -> None:
    with pytest.raises(InvalidError, match=r"<DomainResource> in Patient\.contained"):
        parse_resource(patient("<contained><DomainResource/></contained>"))


def test_unknown_element_is_refused_naming_its_path_and_line() -> None:
    with pytest.raises(InvalidError, match=r"<nickname> in Patient.name\[1\] is not a known "
                       r"element \(line 3\)") as caught:
        parse_resource(patient('<name><given value="a"/></name>\n<name>\n<nickname value="b"/>'
                               "</name>"))
    assert caught.value.expression == ("Patient.name[1].nickname",)


def test_text_where_a_value_attribute_belongs_is_refused() -> None:
    with pytest.raises(InvalidError, match=r"Patient.gender has the text 'male' \(line 1\)"):
        parse_resource(patient("<gender>male</gender>"))


def test_element_id_is_an_attribute_not_an_element() -> None:
    with pytest.raises(InvalidError, match=r"<id> in Patient\.name\[0\] is an XML attribute"):
        parse_resource(patient('<name><id value="n1"/></name>'))


def test_resource_id_is_an_element_not_an_attribute() -> None:
    with pytest.raises(InvalidError, match=r"unknown attribute 'id' \(a resource's id is an"):
        parse_resource(patient("", attributes=' id="p1"'))


def test_unknown_attribute_is_refused() -> None:
    with pytest.raises(InvalidError, match=r"Patient.active has an unknown attribute 'valeu'"):
        parse_resource(patient('<active valeu="true"/>'))


def test_attributes_in_other_namespaces_are_ignored() -> None:
    xsi = ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="x y"'
    assert parse_resource(patient('<active value="true"/>', attributes=xsi)) == {
        "resourceType": "Patient", "active": True}


def test_non_repeating_element_twice_is_refused() -> None:
    with pytest.raises(InvalidError, match=r"Patient\.gender appears more than once"):
        parse_resource(patient('<gender value="male"/><gender value="female"/>'))


def test_primitive_without_value_or_extension_is_refused() -> None:
    with pytest.raises(InvalidError, match=r"Patient\.gender has neither a value attribute"):
        parse_resource(patient("<gender/>"))


def test_empty_complex_element_is_refused() -> None:
    with pytest.raises(InvalidError, match=r"The element Patient\.name\[0\] is empty"):
        parse_resource(patient("<name/>"))


def test_contained_without_a_resource_is_refused() -> None:
    with pytest.raises(InvalidError, match=r"Patient.contained\[0\] must hold a resource"):
        parse_resource(patient("<contained/>"))


@pytest.mark.parametrize(("body", "type_code"), [
    ('<active value="yes"/>', "boolean"),
    ('<multipleBirthInteger value="1.0"/>', "integer"),
    ('<multipleBirthInteger value="007"/>', "integer"),
    ('<photo><size value="-1"/></photo>', "unsignedInt"),
    ('<extension url="u"><valueDecimal value="NaN"/></extension>', "decimal"),
    ('<extension url="u"><valueDecimal value="1,5"/></extension>', "decimal"),
])
def test_number_or_boolean_with_a_bad_value_is_refused(body: str, type_code: str) -> None:
    with pytest.raises(InvalidError, match=f"which is not a valid {type_code}"):
        parse_resource(patient(body))


def test_encoding_other_than_utf8_is_refused() -> None:
    data = b'<?xml version="1.0" encoding="ISO-8859-1"?>' + patient("")
    with pytest.raises(InvalidError, match="encoding 'ISO-8859-1'; FHIR XML must be UTF-8"):
        parse_resource(data)


def test_utf8_byte_order_mark_is_accepted() -> None:
    assert parse_resource(b"\xef\xbb\xbf" + patient('<active value="true"/>'))["active"] is True


# -- values and primitive extensions ----------------------------------------------------


def test_primitive_values_get_their_json_types() -> None:
    resource = parse_resource(patient(
        '<active value="true"/><birthDate value="1970-03-30"/>'
        '<multipleBirthInteger value="2"/>'
        '<extension url="u"><valueDecimal value="1.50"/></extension>'))
    assert resource == {
        "resourceType": "Patient", "extension": [{"url": "u", "valueDecimal": Decimal("1.50")}],
        "active": True, "birthDate": "1970-03-30", "multipleBirthInteger": 2}


@pytest.mark.parametrize(("text", "written"), [
    ("1.50", "1.50"), ("0.10", "0.10"), ("100", "100"), ("-0.0", "-0.0"), ("0.000001", "0.000001"),
    ("3.14159265358979323846", "3.14159265358979323846"),
    # Exponents keep their digits, in fhirhub.fhir.json's lower-case form.
    ("1e3", "1e3"), ("1.0E-22", "1.0e-22"),
])
def test_decimal_keeps_its_digits_both_ways(text: str, written: str) -> None:
    xml = f'<Observation xmlns="{F}"><valueQuantity><value value="{text}"/></valueQuantity>'
    resource = parse_resource(f"{xml}</Observation>".encode())
    value = resource["valueQuantity"]["value"]
    assert isinstance(value, Decimal)
    assert decimal_text(value) == written
    assert f'<value value="{written}"/>'.encode() in dump_resource(resource)


def test_strings_keep_whitespace_quotes_and_markup_characters() -> None:
    text = 'line 1\n\tline "2" & <3>\r\nend '
    resource = {"resourceType": "Patient", "name": [{"text": text}]}
    xml = dump_resource(resource)
    assert b"&#10;&#9;" in xml
    assert round_trip(resource) == resource


def test_character_xml_cannot_carry_is_refused_on_dump() -> None:
    with pytest.raises(InvalidError, match=r"U\+0001") as caught:
        dump_resource({"resourceType": "Patient", "name": [{"text": "a\x01"}]})
    assert caught.value.expression == ("Patient.name[0].text",)


BIRTH_DATE_EXTENSION = {"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                        "valueDateTime": "1974-12-25T14:35:45-05:00"}


def test_primitive_extension_and_id_become_the_underscore_property() -> None:
    xml = patient('<birthDate id="bd" value="1974-12-25"><extension url="'
                  + BIRTH_DATE_EXTENSION["url"] + '"><valueDateTime value="'
                  + BIRTH_DATE_EXTENSION["valueDateTime"] + '"/></extension></birthDate>')
    resource = parse_resource(xml)
    assert resource == {"resourceType": "Patient", "birthDate": "1974-12-25",
                        "_birthDate": {"id": "bd", "extension": [BIRTH_DATE_EXTENSION]}}
    birth_date = elements(dump_resource(resource)).find(f"{{{F}}}birthDate")
    assert birth_date is not None
    assert birth_date.attrib == {"id": "bd", "value": "1974-12-25"}
    assert birth_date[0].attrib == {"url": BIRTH_DATE_EXTENSION["url"]}


def test_repeating_primitive_extensions_are_aligned_with_null() -> None:
    xml = patient('<name><given value="Peter"/><given value="James"><extension url="u">'
                  '<valueCode value="x"/></extension></given><given value="J"/></name>')
    name = parse_resource(xml)["name"][0]
    assert name == {"given": ["Peter", "James", "J"],
                    "_given": [None, {"extension": [{"url": "u", "valueCode": "x"}]}, None]}


def test_repeating_primitive_with_only_an_extension_has_a_null_value() -> None:
    xml = patient('<name><given value="Peter"/><given><extension url="u"><valueCode value="x"/>'
                  '</extension></given></name>')
    name = parse_resource(xml)["name"][0]
    assert name == {"given": ["Peter", None],
                    "_given": [None, {"extension": [{"url": "u", "valueCode": "x"}]}]}
    assert parse_resource(dump_resource({"resourceType": "Patient", "name": [name]})) == {
        "resourceType": "Patient", "name": [name]}


def test_repeating_primitive_with_no_values_at_all_has_only_the_underscore_array() -> None:
    # As the official examples do (ActivityDefinition timingTiming._event).
    xml = patient('<name><given id="g"/></name>')
    assert parse_resource(xml)["name"][0] == {"_given": [{"id": "g"}]}


def test_misaligned_underscore_array_is_refused_on_dump() -> None:
    resource = {"resourceType": "Patient", "name": [{"given": ["a", "b"], "_given": [None]}]}
    with pytest.raises(InvalidError, match="must have the same length"):
        dump_resource(resource)


# -- structure: order, attributes, choices, nested resources ----------------------------


def test_children_are_written_in_definition_order() -> None:
    resource = {"gender": "male", "name": [{"given": ["A"], "family": "B", "use": "official"}],
                "active": True, "id": "p1", "resourceType": "Patient"}
    root = elements(dump_resource(resource))
    assert [child.tag.split("}")[1] for child in root] == ["id", "active", "name", "gender"]
    assert [child.tag.split("}")[1] for child in root[2]] == ["use", "family", "given"]


def test_element_id_and_extension_url_are_attributes() -> None:
    resource = {"resourceType": "Patient",
                "extension": [{"id": "e1", "url": "http://x/y", "valueBoolean": True}],
                "name": [{"id": "n1", "family": "B"}]}
    root = elements(dump_resource(resource))
    assert root[0].attrib == {"id": "e1", "url": "http://x/y"}
    assert root[1].attrib == {"id": "n1"}
    assert round_trip(resource) == resource


def test_choice_element_uses_its_concrete_name() -> None:
    resource = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                "valueQuantity": {"value": Decimal("1.5"), "unit": "kg"}}
    root = elements(dump_resource(resource))
    assert root.find(f"{{{F}}}valueQuantity/{{{F}}}unit") is not None
    assert round_trip(resource) == resource


def test_nested_resources_are_wrapped_in_an_element_named_by_their_type() -> None:
    contained = {"resourceType": "Practitioner", "id": "pr1", "active": True}
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": "p1", "contained": [contained]}},
        {"resource": {"resourceType": "Parameters", "parameter": [
            {"name": "r", "resource": {"resourceType": "Basic", "code": {"text": "c"}}}]}},
    ]}
    root = elements(dump_resource(bundle))
    tags = [element.tag.split("}")[1] for element in root.iter()]
    assert tags[:8] == ["Bundle", "type", "entry", "resource", "Patient", "id", "contained",
                        "Practitioner"]
    assert f"{{{F}}}Basic" in [element.tag for element in root.iter()]
    assert round_trip(bundle) == bundle


def test_unknown_json_property_is_refused_on_dump() -> None:
    with pytest.raises(InvalidError, match=r"Patient\.name\[0\] has no property 'nick'") as caught:
        dump_resource({"resourceType": "Patient", "name": [{"nick": "x"}]})
    assert caught.value.expression == ("Patient.name[0].nick",)


def test_unknown_resource_type_is_refused_on_dump() -> None:
    with pytest.raises(InvalidError, match="needs a resourceType naming an R4 resource type"):
        dump_resource({"resourceType": "Patients"})


def test_array_where_one_value_belongs_is_refused_on_dump() -> None:
    with pytest.raises(InvalidError, match=r"Patient\.gender must not be an array"):
        dump_resource({"resourceType": "Patient", "gender": ["male"]})


# -- the narrative: real XHTML ----------------------------------------------------------

NARRATIVE = (f'{DIV}<p class="a">Peter &amp; <b>Jim</b> &lt;3 &#169; "q"</p>'
             '<table><tr><td>1</td></tr></table><br/><!-- kept --></div>')


def test_narrative_is_written_as_xhtml_and_reads_back_to_the_same_string() -> None:
    resource = {"resourceType": "Patient", "text": {"status": "generated", "div": NARRATIVE}}
    xml = dump_resource(resource)
    div = elements(xml).find(f"{{{F}}}text/{{{XHTML}}}div")
    assert div is not None
    assert div.find(f"{{{XHTML}}}p/{{{XHTML}}}b") is not None
    assert parse_resource(xml)["text"]["div"] == NARRATIVE


def test_narrative_in_a_prefixed_namespace_is_rewritten_with_the_default_one() -> None:
    data = patient('<text><status value="generated"/><h:div><h:p xml:lang="en">a &lt; b<h:br/>'
                   '</h:p></h:div></text>', attributes=f' xmlns:h="{XHTML}"')
    div = parse_resource(data)["text"]["div"]
    assert div == f'{DIV}<p xml:lang="en">a &lt; b<br/></p></div>'


def test_div_outside_the_xhtml_namespace_is_refused() -> None:
    with pytest.raises(InvalidError, match=r"<div> in Patient.text is XHTML: it must be in"):
        parse_resource(patient('<text><status value="generated"/><div>x</div></text>'))


@pytest.mark.parametrize("div", ["<div>x</div>", f"{DIV}<p>x</div>", "plain text",
                                 f"{DIV}&nbsp;</div>"])
def test_narrative_that_is_not_a_well_formed_xhtml_div_is_refused_on_dump(div: str) -> None:
    resource = {"resourceType": "Patient", "text": {"status": "generated", "div": div}}
    with pytest.raises(InvalidError, match=r"Patient\.text\.div"):
        dump_resource(resource)


# -- output form ------------------------------------------------------------------------


def test_output_is_utf8_with_a_declaration_and_the_fhir_namespace() -> None:
    xml = dump_resource({"resourceType": "Patient", "name": [{"family": "Zoë"}]})
    assert xml.startswith(b'<?xml version="1.0" encoding="UTF-8"?>'
                          b'<Patient xmlns="http://hl7.org/fhir">')
    assert "Zoë".encode() in xml


def test_pretty_output_indents_each_element_and_reads_back_the_same() -> None:
    resource = {"resourceType": "Patient", "id": "p1",
                "text": {"status": "generated", "div": f"{DIV}<p>x</p></div>"},
                "name": [{"family": "B", "_family": {"extension": [{"url": "u",
                                                                     "valueString": "s"}]}}]}
    xml = dump_resource(resource, pretty=True).decode()
    assert xml.splitlines() == [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<Patient xmlns="{F}">',
        '  <id value="p1"/>',
        "  <text>",
        '    <status value="generated"/>',
        f"    {DIV}<p>x</p></div>",
        "  </text>",
        "  <name>",
        '    <family value="B">',
        '      <extension url="u">',
        '        <valueString value="s"/>',
        "      </extension>",
        "    </family>",
        "  </name>",
        "</Patient>",
    ]
    assert parse_resource(xml.encode()) == resource


def test_public_surface_is_parse_and_dump() -> None:
    assert fhirhub.fhir.xml.__all__ == ["dump_resource", "parse_resource"]
