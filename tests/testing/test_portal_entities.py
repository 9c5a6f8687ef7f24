"""Companies, tasks.task.get and references between records that resolve."""
from __future__ import annotations

import pytest

from bitrix_threaded import Bitrix
from bitrix_threaded.testing.store import DataStore, PortalError


@pytest.fixture(scope="module")
def store():
    return DataStore(deals=3000, leads=800, contacts=700, companies=150, tasks=200, users=12,
                     seed=5)


def _every(store, method, select):
    rows, start = [], 0
    while True:
        outcome = store.call(method, {"select": select, "start": start})
        rows.extend(outcome.result)
        if outcome.next is None:
            return rows
        start = outcome.next


def test_deal_references_name_existing_contacts_and_companies(store):
    contacts = {str(i) for i in store.ids("contact")}
    companies = {str(i) for i in store.ids("company")}
    deals = _every(store, "crm.deal.list", ["ID", "CONTACT_ID", "COMPANY_ID"])
    assert len(deals) == 3000
    with_contact = [d for d in deals if d["CONTACT_ID"] is not None]
    with_company = [d for d in deals if d["COMPANY_ID"] != "0"]
    assert len(with_contact) > 2000 and len(with_company) > 2000
    assert {d["CONTACT_ID"] for d in with_contact} <= contacts
    assert {d["COMPANY_ID"] for d in with_company} <= companies
    # Spread over the referred records, not piled on a few.
    assert len({d["CONTACT_ID"] for d in with_contact}) > 500


def test_whole_records_written_as_json_text_resolve_too(store):
    # Whole-record pages take the pre-written JSON path; the references must agree.
    contacts = {str(i) for i in store.ids("contact")}
    page = store.call("crm.deal.list", {}).result
    assert all(d["CONTACT_ID"] is None or d["CONTACT_ID"] in contacts for d in page)


def test_lead_and_contact_references_resolve(store):
    contacts = {str(i) for i in store.ids("contact")}
    companies = {str(i) for i in store.ids("company")}
    leads = _every(store, "crm.lead.list", ["ID", "STATUS_ID", "CONTACT_ID"])
    converted = [lead for lead in leads if lead["STATUS_ID"] == "CONVERTED"]
    assert converted and all(lead["CONTACT_ID"] in contacts for lead in converted)
    people = _every(store, "crm.contact.list", ["ID", "COMPANY_ID"])
    linked = [c["COMPANY_ID"] for c in people if c["COMPANY_ID"] is not None]
    assert linked and set(linked) <= companies


def test_without_contacts_or_companies_there_is_nothing_to_refer_to():
    bare = DataStore(deals=200, seed=2)
    deals = bare.call("crm.deal.list", {"select": ["CONTACT_ID", "COMPANY_ID"]}).result
    assert {d["CONTACT_ID"] for d in deals} == {None}
    assert {d["COMPANY_ID"] for d in deals} == {"0"}


def test_companies_are_a_legacy_crm_entity(store):
    first = store.ids("company")[0]
    page = store.call("crm.company.list", {"select": ["ID", "TITLE"]})
    assert page.total == 150 and page.next == 50
    assert page.result[0] == {"ID": str(first), "TITLE": page.result[0]["TITLE"]}
    company = store.call("crm.company.get", {"id": first}).result
    assert company["ID"] == str(first) and company["TITLE"].endswith(f"#{first}")
    assert "COMPANY_TYPE" in store.call("crm.company.fields", {}).result
    item = store.call("crm.item.get", {"entityTypeId": 4, "id": first}).result["item"]
    assert item["id"] == first and item["title"] == company["TITLE"]


def test_companies_can_be_written():
    own = DataStore(companies=3)
    new_id = own.call("crm.company.add", {"fields": {"TITLE": "Acme"}}).result
    assert own.call("crm.company.get", {"id": new_id}).result["TITLE"] == "Acme"
    own.call("crm.company.update", {"id": new_id, "fields": {"TITLE": "Acme Ltd"}})
    assert own.call("crm.company.get", {"id": new_id}).result["TITLE"] == "Acme Ltd"
    own.call("crm.company.delete", {"id": new_id})
    with pytest.raises(PortalError):
        own.call("crm.company.get", {"id": new_id})


def test_tasks_task_get(store):
    first = store.ids("task")[0]
    task = store.call("tasks.task.get", {"taskId": first}).result["task"]
    assert task["id"] == str(first) and "responsibleId" in task
    narrow = store.call("tasks.task.get", {"taskId": first, "select": ["ID", "TITLE"]})
    assert set(narrow.result["task"]) == {"id", "title"}
    assert store.call("tasks.task.get", {"taskId": 10 ** 9}).result == []
    with pytest.raises(PortalError) as missing:
        store.call("tasks.task.get", {})
    assert missing.value.code == "100"
    with pytest.raises(PortalError) as wrong:
        store.call("tasks.task.get", {"taskId": "abc"})
    assert wrong.value.code == "0"


def test_list_and_get_tasks_and_companies(fake_portal):
    with Bitrix(fake_portal.webhook, verbose=False) as bx:
        tasks = bx.list_and_get("tasks.task")
        companies = bx.list_and_get("crm.company")
    assert len(tasks) == fake_portal.count("task")
    first = next(iter(tasks))
    assert tasks[first]["task"]["id"] == first
    assert sorted(int(i) for i in companies) == fake_portal.ids("company")


def test_the_readme_batch_reference_resolves(fake_portal):
    with Bitrix(fake_portal.webhook, verbose=False) as bx:
        deal = next(d for d in bx.get_all("crm.deal.list", {"select": ["ID", "CONTACT_ID"]})
                    if d["CONTACT_ID"])
        reply = bx.call_batch({"halt": 0, "cmd": {
            "a": f"crm.deal.get?ID={deal['ID']}",
            "b": "crm.contact.get?ID=$result[a][CONTACT_ID]",
        }})
    assert reply["b"]["ID"] == deal["CONTACT_ID"]
