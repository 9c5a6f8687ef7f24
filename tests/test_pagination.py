"""Pagination strategies driven without HTTP: plans run on the fake portal's data store.

The loop below plays the runner's part: each plan is encoded exactly as the client
sends it, executed by the portal's batch executor against a ``DataStore``, parsed by
the client's batch parser and fed back. Plans run in a shuffled order (as on a thread
pool), and records can be added or deleted between plans.
"""

from __future__ import annotations

import random
import re
import warnings
from concurrent.futures import Future

import pytest

from bitrix_threaded.batch import Command, batch_payload, parse_batch_reply, split_reply
from bitrix_threaded.client import _Collected
from bitrix_threaded.driver import drive
from bitrix_threaded.encoding import encode_command
from bitrix_threaded.errors import NotFound
from bitrix_threaded.methods import list_method
from bitrix_threaded.pagination import (
    STAGGER, STAGGER_STEP, IdList, IdRanges, OffsetPages, Outcome, Plan, Step,
)
from bitrix_threaded.runner import BatchOutcome
from bitrix_threaded.testing.batch import run_batch
from bitrix_threaded.testing.store import DataStore, PortalError


def execute_on(store, fail=None):
    def execute(method, params):
        if fail is not None:
            outcome = fail(method, params)
            if outcome is not None:
                return outcome
        try:
            out = store.call(method.lower(), params)
        except PortalError as exc:
            return {"error": exc.code, "error_description": exc.description}
        reply = {"result": out.result, "time": {"operating": 0}}
        if out.total is not None:
            reply["total"] = out.total
        if out.next is not None:
            reply["next"] = out.next
        return reply
    return execute


def pairs_of(step):
    """A step's records as ``(key, record)`` pairs (a run's records share its key)."""
    out = list(step.records)
    for key, page in step.runs:
        out.extend((key, record) for record in page)
    return out


def in_order(steps):
    """What get_all returns for ``steps``."""
    collected = _Collected()
    for step in steps:
        collected.add(step)
    return collected.in_order()


def run(strategy, store, *, seed=0, between=None, fail=None, shuffle=True):
    """Drive ``strategy`` to the end; returns the (key, record) pairs and plans sent."""
    rng = random.Random(seed)
    queue = list(strategy.initial())
    pairs, sent = [], []
    while queue:
        plan = queue.pop(rng.randrange(len(queue)) if shuffle else 0)
        sent.append(plan)
        for command in plan.commands:  # the strategy's own encoding is the general one
            assert command.text == encode_command(command.method, command.params)
        chunk = list(enumerate(plan.commands))
        reply = run_batch(batch_payload(chunk), execute_on(store, fail))
        parsed = parse_batch_reply({"result": reply})
        results, failures = split_reply(parsed, chunk)
        totals = {int(label[1:]): n for label, n in parsed.totals.items()}
        step = strategy.consume(plan, Outcome(results, failures, totals))
        pairs.extend(pairs_of(step))
        queue.extend(step.plans)
        if between is not None:
            between()
    strategy.finish()
    return pairs, sent


def ids_of(pairs, key="ID"):
    return [int(record[key]) for _, record in pairs]


DEALS = list_method("crm.deal.list")


@pytest.mark.parametrize("count", [0, 1, 49, 50, 51, 2500, 2501, 7000])
@pytest.mark.parametrize("make", [
    lambda p: IdRanges(DEALS, p, parallel=4),
    lambda p: OffsetPages(DEALS, p),
])
def test_every_record_exactly_once(count, make):
    store = DataStore(deals=count, seed=3)
    pairs, _ = run(make({"select": ["ID", "TITLE"]}), store)
    got = ids_of(pairs)
    assert sorted(got) == store.ids("deal")
    assert len(got) == len(set(got))


def test_id_ranges_use_cursor_pages_without_offset_scans():
    store = DataStore(deals=6000, seed=5)
    strategy = IdRanges(DEALS, {}, parallel=3)
    _, sent = run(strategy, store)
    probe, *walks = sent
    assert [c.params["start"] for c in probe.commands] == [0, -1]
    for plan in walks:
        # start=0 only on a range's first page (its count sizes the range), never an offset.
        assert all(c.params["start"] in (0, -1) for c in plan.commands)
        assert all(c.params["order"] == {"ID": "ASC"} for c in plan.commands)
        for command in plan.commands:
            cursor = command.params["filter"][">ID"]
            if command.params["start"] == 0:
                assert isinstance(cursor, int)
    counted = sum(c.params["start"] == 0 for p in walks for c in p.commands)
    assert counted <= 6000 / 2250 + 2
    # Pages past the end of a range (a hole in the IDs) are the only waste.
    assert sum(len(p.commands) for p in walks) <= 1.5 * 6000 / 50


def test_id_ranges_waste_few_pages_on_a_large_export():
    store = DataStore(deals=100000, seed=5)
    _, sent = run(IdRanges(DEALS, {"select": ["ID"]}, parallel=32), store, seed=1)
    assert sum(len(p.commands) for p in sent) <= 1.25 * 100000 / 50
    assert len(sent) <= 1.25 * 100000 / 2500


def _first_cut(strategy, store):
    """The plans sent right after the probe, in the order the strategy gives them."""
    (probe,) = strategy.initial()
    chunk = list(enumerate(probe.commands))
    reply = run_batch(batch_payload(chunk), execute_on(store))
    parsed = parse_batch_reply({"result": reply})
    results, failures = split_reply(parsed, chunk)
    totals = {int(label[1:]): n for label, n in parsed.totals.items()}
    return strategy.consume(probe, Outcome(results, failures, totals)).plans


def _bounds(plan):
    filter_ = plan.commands[0].params["filter"]
    return filter_[">ID"], filter_["<=ID"]


def test_one_wave_pieces_are_staggered_widest_first_within_a_batch():
    # Replies of even pieces arrive together and wait to be decoded one after another.
    # Staggered: a level of widest pieces, sent first, then each narrower than the one
    # before by STAGGER_STEP of the share, so each reply arrives a little before the
    # next and is decoded while the wider ones are still on their way.
    store = DataStore(deals=100000, seed=5)
    strategy = IdRanges(DEALS, {}, parallel=48, request_budget=48)
    cut = _first_cut(strategy, store)
    assert not strategy._waves and len(cut) == 48
    chains = [len(plan.commands) for plan in cut]
    widths = [hi - lo for lo, hi in map(_bounds, cut)]
    assert chains == sorted(chains, reverse=True) and chains[0] - chains[-1] >= 6
    assert max(chains) <= 50
    share = sum(widths) / len(widths)
    top = max(widths)  # IDs are whole: widths of one level differ by at most 1
    assert widths[0] >= top - 1 and widths[-1] == min(widths)
    level = [w for w in widths if w >= top - 1]
    assert widths[:len(level)] == level and 10 <= len(level) <= 30
    assert 1.06 < top / share <= 1 + STAGGER  # 1.068 of the share here
    falling = widths[len(level) - 1:]
    steps = [a - b for a, b in zip(falling, falling[1:])]
    assert all(abs(d - STAGGER_STEP * share) <= 2 for d in steps)  # rounding to IDs
    assert 0.8 < widths[-1] / share < 0.9
    spans = sorted(map(_bounds, cut))
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))  # no gap, no overlap
    pairs, sent = run(IdRanges(DEALS, {}, parallel=48, request_budget=48), store, seed=2)
    assert sorted(ids_of(pairs)) == store.ids("deal")
    assert len(pairs) == len(set(ids_of(pairs)))
    assert len(sent) == 49  # the probe and the first cut: no piece needed a second request


def test_few_pieces_fall_by_the_step_from_the_widest():
    store = DataStore(deals=20000, seed=6)
    strategy = IdRanges(DEALS, {}, parallel=12, request_budget=12)
    cut = _first_cut(strategy, store)
    widths = [hi - lo for lo, hi in map(_bounds, cut)]
    share = sum(widths) / len(widths)
    steps = [a - b for a, b in zip(widths, widths[1:])]
    assert len(widths) == 12 and all(abs(d - STAGGER_STEP * share) <= 2 for d in steps)
    assert widths[0] / share == pytest.approx(1 + STAGGER_STEP * 11 / 2, abs=0.002)


@pytest.mark.parametrize("pieces", [2, 3, 48, 150, 300, 1000, 5000])
def test_staggered_widths_keep_their_mean_and_stay_wide(pieces):
    widths = IdRanges(DEALS, {})._stagger(pieces, 1000.0)
    assert len(widths) == pieces and sum(widths) == pytest.approx(pieces)
    assert widths == sorted(widths, reverse=True)
    assert max(widths) <= 1 + STAGGER + 1e-9 and min(widths) >= 0.5


@pytest.mark.parametrize("span, first_width", [(50, 2250), (200, None)])
def test_a_range_denser_at_its_cursor_is_cut_there_first(span, first_width):
    # 4,550 records left over 10,990 IDs (0.41 an ID). The last page: 50 records over
    # 50 IDs (a cluster the cursor has just entered) -> a first piece of one batch at
    # that density, the rest counted in two; over 200 IDs (sparser than the average)
    # -> an even cut in three.
    strategy = IdRanges(DEALS, {})
    rid = strategy._new_range(601150, 612140)
    rng = strategy._ranges[rid]
    rng.left, rng.span = 4550, span
    pieces = strategy._split(rid, 3)
    bounds = [(strategy._ranges[r].lo, strategy._ranges[r].hi) for r, _, _ in pieces]
    assert all(n == 1 and counted for _, n, counted in pieces)
    assert bounds[0][0] == 601150 and bounds[-1][1] == 612140
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    if first_width:
        assert bounds[0][1] - bounds[0][0] == first_width and len(bounds) == 3
    else:
        assert [b - a for a, b in bounds] == [3663, 3664, 3663]


@pytest.mark.parametrize("budget", [8, 4])
def test_pieces_stay_even_without_room_in_a_batch_or_over_many_waves(budget):
    # 8: the even share already fills a batch, so no piece may chain more; 4: the
    # export takes many waves of requests, which leave one by one anyway.
    store = DataStore(deals=20000, seed=6)
    strategy = IdRanges(DEALS, {}, parallel=budget, request_budget=budget)
    cut = _first_cut(strategy, store)
    assert strategy._waves is (budget == 4)
    chains = {len(plan.commands) for plan in cut}
    widths = [hi - lo for lo, hi in map(_bounds, cut)]
    assert len(chains) == 1 and max(chains) <= 50
    if budget == 4:
        assert max(widths) - min(widths) <= 1
    else:  # only what the full batch leaves: 0.5%, less than a page per piece
        assert max(widths) / min(widths) < 1.02


def test_an_export_of_many_request_waves_sends_few_empty_pages():
    # 300,000 records, 2,500 a request, 6 requests at once: fifty waves. Pieces of two
    # requests each (a counted chain of a full batch, then the exact rest): half the
    # counts and short end pages of one-request pieces, and no more requests.
    store = DataStore(deals=300000, seed=5)
    sent = {}
    for budget in (6, None):
        strategy = IdRanges(DEALS, {"select": ["ID"]}, parallel=6, request_budget=budget)
        pairs, sent[budget] = run(strategy, store, seed=1)
        assert sorted(ids_of(pairs)) == store.ids("deal")
        assert len(pairs) == len(set(ids_of(pairs)))
        assert strategy._waves is (budget is not None)
    commands = {b: sum(len(p.commands) for p in plans) for b, plans in sent.items()}
    counted = {b: sum(c.params["start"] == 0 for p in plans for c in p.commands)
               for b, plans in sent.items()}
    assert commands[6] <= 1.02 * 300000 / 50 < commands[None]
    assert counted[6] <= counted[None] / 2 + 2
    assert len(sent[6]) <= len(sent[None]) + 3
    assert max(len(p.commands) for p in sent[6]) == 50


def test_id_ranges_split_a_large_export_into_many_pieces():
    store = DataStore(deals=20000, seed=9)
    strategy = IdRanges(DEALS, {}, batch_size=10, parallel=6)
    pairs, sent = run(strategy, store, seed=4)
    assert sorted(ids_of(pairs)) == store.ids("deal")
    assert len(strategy._ranges) > 6  # cut by the counts into batch-sized pieces
    assert sum(len(p.commands) for p in sent) <= 1.6 * 20000 / 50


@pytest.mark.parametrize("budget", [None, 2])  # 2: many waves, two-request pieces
def test_id_ranges_exactly_once_while_records_change(budget):
    store = DataStore(deals=8000, seed=11)
    before = set(store.ids("deal"))
    rng = random.Random(2)
    deleted, added = set(), set()

    def mutate():
        a, d = store.mutate(rng, inserts=3, deletes=3)
        added.update(a)
        deleted.update(d)

    strategy = IdRanges(DEALS, {}, batch_size=5, parallel=4, request_budget=budget)
    pairs, _ = run(strategy, store, between=mutate)
    assert strategy._waves is (budget is not None)
    got = ids_of(pairs)
    assert len(got) == len(set(got)), "no duplicates"
    survivors = before - deleted
    assert survivors <= set(got), "every record that lived throughout came"
    assert set(got) <= before | added


def test_id_ranges_keep_every_steady_record_when_others_begin_to_match_the_filter():
    # Counted ranges: records that begin to match after a range was counted must not
    # push the range's last steady records out of the export.
    store = DataStore(deals=6000, seed=12)
    closed = [int(r["ID"]) for r in store.call(
        "crm.deal.list", {"filter": {"CLOSED": "Y"}, "select": ["ID"], "start": -1}).result]
    steady = {int(r["ID"]) for r in _all(store, {"CLOSED": "N"})}
    reopen = iter(sorted(set(store.ids("deal")) - steady))
    reopened = set()

    def mutate():
        for _ in range(4):
            record_id = next(reopen, None)
            if record_id is not None:
                store.call("crm.deal.update", {"id": record_id, "fields": {"CLOSED": "N"}})
                reopened.add(record_id)

    assert closed
    for seed in range(3):
        pairs, _ = run(IdRanges(DEALS, {"filter": {"CLOSED": "N"}}, batch_size=5, parallel=4),
                       store, seed=seed, between=mutate)
        got = ids_of(pairs)
        assert len(got) == len(set(got)), "no duplicates"
        assert steady <= set(got), "every record that matched throughout came"
        steady |= reopened


def _all(store, filter_):
    out, start = [], 0
    while True:
        page = store.call("crm.deal.list", {"filter": filter_, "select": ["ID"], "start": start})
        out.extend(page.result)
        if page.next is None:
            return out
        start = page.next


def test_offset_pages_can_duplicate_or_lose_under_changes_but_never_return_duplicates():
    store = DataStore(deals=3000, seed=12)
    rng = random.Random(3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the count may change: that is the point
        pairs, _ = run(OffsetPages(DEALS, {}, batch_size=5), store,
                       between=lambda: store.mutate(rng, inserts=2, deletes=2))
    got = ids_of(pairs)
    assert len(got) == len(set(got))


def test_the_users_filter_and_own_id_bounds_are_kept():
    store = DataStore(deals=5000, seed=13)
    params = {"filter": {">ID": 1000, "<=ID": 9000, "CLOSED": "N"}, "select": ["ID", "CLOSED"]}
    pairs, _ = run(IdRanges(DEALS, params, parallel=3), store)
    reference = [r for r in store.call("crm.deal.list", {"filter": {">ID": 1000, "<=ID": 9000,
                                                                    "CLOSED": "N"},
                                                         "select": ["ID"], "start": 0}).result]
    assert reference, "the filter matches something"
    got = ids_of(pairs)
    assert all(1000 < i <= 9000 for i in got)
    assert all(r["CLOSED"] == "N" for _, r in pairs)
    expected = sorted(i for i in store.ids("deal") if 1000 < i <= 9000
                      and store.call("crm.deal.get", {"id": i}).result["CLOSED"] == "N")
    assert sorted(got) == expected


@pytest.mark.parametrize("odd", ["a&b=c [x]+~%20\u00e9", "\x00cursor\x00"])
@pytest.mark.parametrize("key", ["filter", "FILTER"])
def test_chained_pages_carry_the_callers_filter_encoded_like_any_command(odd, key):
    # The pages chained after a piece's first one are spliced from one encoded model;
    # run() checks each one's text against the general encoder. The second value is
    # the model's own marker: those commands are encoded one by one instead.
    store = DataStore(deals=6000, seed=21)
    params = {key: {"!TITLE": odd, ">ID": 3}, "select": ["ID", "TITLE"]}
    pairs, sent = run(IdRanges(DEALS, params, parallel=4, request_budget=4), store)
    assert sorted(ids_of(pairs)) == [i for i in store.ids("deal") if i > 3]
    chained = [c for p in sent for c in p.commands
               if isinstance(c.params[key][">ID"], str)]
    assert len(chained) > 60
    assert all(c.params[key]["!TITLE"] == odd and c.params["start"] == -1 for c in chained)
    refs = {c.params[key][">ID"] for c in chained}
    assert all(re.fullmatch(r"\$result\[c\d+\]\[49\]\[ID\]", ref) for ref in refs)


def test_booleans_in_filters_work_on_every_page():
    store = DataStore(deals=400, seed=14)
    closed = [i for i in store.ids("deal")
              if store.call("crm.deal.get", {"id": i}).result["CLOSED"] == "Y"]
    assert len(closed) > 60
    for strategy in (IdRanges(DEALS, {"filter": {"CLOSED": True}}, parallel=2),
                     OffsetPages(DEALS, {"filter": {"CLOSED": True}})):
        pairs, _ = run(strategy, store)
        assert sorted(ids_of(pairs)) == closed


def test_select_without_the_id_still_pages():
    store = DataStore(deals=300, seed=15)
    pairs, _ = run(IdRanges(DEALS, {"select": ["TITLE"]}, parallel=2), store)
    assert sorted(ids_of(pairs)) == store.ids("deal")


def test_nested_results_crm_item_and_tasks():
    store = DataStore(deals=700, tasks=400, seed=16)
    items = list_method("crm.item.list")
    pairs, _ = run(IdRanges(items, {"entityTypeId": 2}, parallel=2), store)
    assert sorted(r["id"] for _, r in pairs) == store.ids("deal")
    tasks = list_method("tasks.task.list")
    pairs, _ = run(IdRanges(tasks, {}, parallel=2), store)
    assert sorted(int(r["id"]) for _, r in pairs) == store.ids("task")
    pairs, _ = run(OffsetPages(tasks, {}), store)
    assert sorted(int(r["id"]) for _, r in pairs) == store.ids("task")


def test_legacy_total_zero_or_absent_with_start_minus_one():
    for legacy_zero in (True, False):
        store = DataStore(deals=260, seed=17, legacy_total_zero=legacy_zero)
        pairs, _ = run(IdRanges(DEALS, {}, parallel=2), store)
        assert sorted(ids_of(pairs)) == store.ids("deal")


def test_id_list_fetches_known_ids_fifty_per_command():
    store = DataStore(deals=3000, seed=18)
    wanted = store.ids("deal")[::3][:700]
    strategy = IdList(DEALS, {"select": ["ID", "TITLE"]}, ids=wanted + [10 ** 9])
    pairs, sent = run(strategy, store)
    assert sorted(ids_of(pairs)) == sorted(wanted)
    assert sum(len(p.commands) for p in sent) == 15
    assert strategy.missing == [10 ** 9]


def test_transient_page_failures_are_asked_again():
    store = DataStore(deals=1200, seed=19)
    failed = {"n": 0}

    def fail(method, params):
        if failed["n"] < 5 and params.get("start") in ("-1", "100", "150"):
            failed["n"] += 1
            return {"error": "OPERATION_TIME_LIMIT",
                    "error_description": "Method is blocked due to operation time limit."}
        return None

    for strategy in (IdRanges(DEALS, {}, batch_size=4, parallel=2),
                     OffsetPages(DEALS, {}, batch_size=4)):
        failed["n"] = 0
        pairs, _ = run(strategy, store, fail=fail)
        assert sorted(ids_of(pairs)) == store.ids("deal")
        assert failed["n"] == 5


def test_a_permanent_failure_raises_the_typed_error():
    store = DataStore(deals=10, seed=20)
    strategy = OffsetPages(list_method("crm.item.list"), {"entityTypeId": 999})
    with pytest.raises(NotFound):
        run(strategy, store)


def test_offset_pages_warn_when_the_count_changes():
    store = DataStore(deals=300, seed=21)
    rng = random.Random(1)
    with pytest.warns(UserWarning, match="first page said"):
        run(OffsetPages(DEALS, {}, batch_size=1), store,
            between=lambda: store.mutate(rng, inserts=0, deletes=5))


def test_plans_never_exceed_the_batch_size():
    store = DataStore(deals=4000, seed=22)
    for strategy in (IdRanges(DEALS, {}, batch_size=7, parallel=3),
                     OffsetPages(DEALS, {}, batch_size=7),
                     IdList(DEALS, {}, batch_size=7, ids=store.ids("deal"))):
        _, sent = run(strategy, store)
        assert max(len(p.commands) for p in sent) <= 7


def test_strategies_refuse_what_they_cannot_do():
    with pytest.raises(ValueError):
        IdRanges(list_method("crm.address.list"), {})
    with pytest.raises(ValueError):
        IdRanges(DEALS, {"order": {"TITLE": "DESC"}})
    with pytest.raises(ValueError):
        IdList(DEALS, {}, ids=["x"])
    with pytest.raises(ValueError):
        OffsetPages(DEALS, {}, batch_size=51)


def test_plan_is_a_plain_value():
    plan = Plan(commands=(), tag="x")
    assert plan.attempt == 0 and plan.tag == "x"


# -- families: parameters, shapes, keys ------------------------------------------------

def test_parameters_keep_the_callers_order_and_key_case():
    positional = list_method("task.elapseditem.getlist")
    params = {"TASKID": 7, "ORDER": {"ID": "desc"}, "FILTER": {"USER_ID": 1},
              "SELECT": ["ID"], "PARAMS": {}, "start": 100}
    (command,), = [p.commands for p in OffsetPages(positional, params).initial()]
    assert list(command.params) == ["TASKID", "ORDER", "FILTER", "SELECT", "PARAMS", "start"]
    assert command.params["FILTER"] == {"USER_ID": 1} and command.params["start"] == 0
    users = IdRanges(list_method("user.get"), {"FILTER": {"ACTIVE": True}, "ADMIN_MODE": 1})
    first, last = users.initial()[0].commands
    assert list(first.params) == ["FILTER", "ADMIN_MODE", "sort", "order", "start"]
    assert first.params["sort"] == "ID" and first.params["order"] == "ASC"
    assert last.params["order"] == "DESC"


def test_id_order_in_either_form_is_recognised():
    from bitrix_threaded.pagination import is_id_order, without_id_order
    users, deals = list_method("user.get"), DEALS
    assert is_id_order(users, {"sort": "id", "order": "asc"})
    assert is_id_order(users, {})
    assert not is_id_order(users, {"sort": "NAME"})
    assert not is_id_order(users, {"sort": "ID", "order": "DESC"})
    assert is_id_order(deals, {"ORDER": {"ID": "ASC"}})
    assert not is_id_order(deals, {"order": {"DATE_CREATE": "ASC"}})
    assert without_id_order(users, {"sort": "ID", "FILTER": {}}) == {"FILTER": {}}
    with pytest.raises(ValueError):
        without_id_order(deals, {"order": {"TITLE": "ASC"}})


def feed(strategy, plan, results, totals=None):
    return strategy.consume(plan, Outcome(dict(enumerate(results)), [], totals or {}))


def test_offset_pages_step_by_the_first_pages_length():
    strategy = OffsetPages(list_method("crm.timeline.logmessage.list"), {})
    plan = strategy.initial()[0]
    step = feed(strategy, plan, [[{"id": i} for i in range(10)]], {0: 37})
    starts = [c.params["start"] for p in step.plans for c in p.commands]
    assert starts == [10, 20, 30]


def test_unknown_methods_drop_repeats_by_the_id_key_they_carry():
    strategy = OffsetPages(list_method("vendor.thing.list"), {})
    plan = strategy.initial()[0]
    page = {"things": [{"id": i} for i in range(50)]}
    step = feed(strategy, plan, [page], {0: 60})
    later = step.plans[0]
    again = feed(strategy, later, [{"things": [{"id": i} for i in range(45, 60)]}], {0: 60})
    assert [r["id"] for _, r in pairs_of(again)] == list(range(50, 60))


def test_shapes_the_client_does_not_understand_are_errors():
    from bitrix_threaded.errors import InvalidResponse
    from bitrix_threaded.pagination import NotAList
    strategy = OffsetPages(list_method("vendor.thing.list"), {})
    plan = strategy.initial()[0]
    with pytest.raises(InvalidResponse, match="'items', 'users'"):
        feed(strategy, plan, [{"items": [], "users": []}], {0: 0})
    with pytest.raises(NotAList):
        feed(OffsetPages(list_method("crm.deal.fields"), {}), plan, [{"ID": {"type": "int"}}])
    with pytest.raises(InvalidResponse, match="key 'tasks'"):
        list_method("tasks.task.list").records({"items": []})


def test_a_full_first_page_without_ids_is_never_the_end():
    from bitrix_threaded.errors import InvalidResponse
    strategy = IdRanges(DEALS, {})
    plan = strategy.initial()[0]
    with pytest.raises(InvalidResponse, match="without 'ID'"):
        feed(strategy, plan, [[{"TYPE_ID": "1"}] * 50, [{"ID": "900"}]], {0: 400})


def test_id_lists_refuse_records_nobody_asked_for():
    from bitrix_threaded.errors import InvalidResponse
    strategy = IdList(DEALS, {}, ids=[1, 2])
    plan = strategy.initial()[0]
    with pytest.raises(InvalidResponse, match="ignored the @ID filter"):
        feed(strategy, plan, [[{"ID": "1"}, {"ID": "3"}]])
    with pytest.raises(ValueError, match="cannot be filtered by ID"):
        IdList(list_method("crm.address.list"), {}, ids=[1])
    users = IdList(list_method("user.get"), {}, ids=[5])
    (command,), = [p.commands for p in users.initial()]
    assert command.params["FILTER"] == {"@ID": [5]}


def test_every_family_row_cites_its_documentation_page():
    from bitrix_threaded.methods import known_list_methods
    for name in known_list_methods():
        doc = list_method(name).doc
        assert doc and doc.startswith("api-reference/") and doc.endswith(".md"), name


# -- pages in order travel whole (runs); any other page record by record --------------


@pytest.mark.parametrize("page, expected", [
    ([{"ID": "3"}, {"ID": "7"}, {"ID": "12"}], (3, 12)),
    ([{"ID": "103"}, {"ID": "107"}, {"ID": "112"}], (103, 112)),   # one width
    ([{"ID": 3}, {"ID": 7}], (3, 7)),
    ([{"ID": "7"}], (7, 7)),
    ([{"ID": 7}], (7, 7)),
    ([{"ID": "9"}, {"ID": "10"}], (9, 10)),           # numeric, not text, order
    ([{"ID": "98"}, {"ID": "99"}, {"ID": "100"}], (98, 100)),
    ([{"ID": "10"}, {"ID": "9"}], None),              # text order, not numeric
    ([{"ID": "007"}, {"ID": "010"}], (7, 10)),        # what int() reads, as before
    ([{"ID": "010"}, {"ID": "007"}], None),
    ([{"ID": " 5"}, {"ID": "+6"}], (5, 6)),
    ([{"ID": "\u0661\u0662"}, {"ID": "13"}], (12, 13)),  # int() reads other digits
    ([{"ID": "0"}, {"ID": "1"}], (0, 1)),
    ([{"ID": "7"}, {"ID": "3"}], None),               # descending
    ([{"ID": "21"}, {"ID": "20"}], None),
    ([{"ID": "3"}, {"ID": "3"}], None),               # repeated
    ([{"ID": "33"}, {"ID": "33"}], None),
    ([{"ID": "3"}, {"ID": 7}], None),                 # mixed kinds
    ([{"ID": 3}, {"ID": "7"}], None),
    ([{"ID": "3"}, {"ID": "x"}], None),               # not a number
    ([{"ID": "3"}, {"ID": "4x"}], None),
    ([{"ID": "3"}, {"ID": ""}], None),
    ([{"ID": ""}, {"ID": "3"}], None),
    ([{"ID": "-3"}, {"ID": "-2"}], (-3, -2)),         # as int() reads them
    ([{"ID": 3.0}, {"ID": 4.0}], None),               # floats are no IDs
    ([{"ID": True}, {"ID": 2}], None),                # nor booleans
    ([{"ID": None}, {"ID": "2"}], None),
    ([{"ID": "3"}, {"TITLE": "no id"}], None),
    ([{"ID": "3"}, ["ID"]], None),                    # not a dict
    ([{"ID": "3"}, "ID"], None),
    ([{"ID": "3"}, None], None),
    ([], None),
])
def test_ascending_span_only_for_pages_wholly_in_order(page, expected):
    from bitrix_threaded.pagination import _ascending_span
    assert _ascending_span(page, "ID") == expected
    assert _ascending_span(page, None) is None


def test_ascending_span_agrees_with_converting_every_id():
    # Random pages of decimal strings (some of one width, some not, some out of order):
    # the span is given exactly when the IDs as ints strictly ascend.
    import random

    from bitrix_threaded.pagination import _ascending_span
    rng = random.Random(5)
    for _ in range(2000):
        start = rng.choice([1, 9, 95, 990, 99_960, 10 ** 12])
        ids = sorted(rng.sample(range(start, start + 80), rng.randint(1, 50)))
        if rng.random() < 0.3:
            i, j = rng.randrange(len(ids)), rng.randrange(len(ids))
            ids[i], ids[j] = ids[j], ids[i]
        page = [{"ID": str(i)} for i in ids]
        ascending = all(a < b for a, b in zip(ids, ids[1:]))
        assert _ascending_span(page, "ID") == ((ids[0], ids[-1]) if ascending else None)


def _export_steps(store, reorder):
    """Drive ID ranges over ``store`` whose ascending list pages pass through ``reorder``;
    returns the steps."""
    inner = execute_on(store)

    def execute(method, params):
        reply = inner(method, params)
        page = reply.get("result")
        if isinstance(page, list) and params.get("order") == {"ID": "ASC"}:
            reply["result"] = reorder(page, params)
        return reply

    strategy = IdRanges(DEALS, {"select": ["ID", "TITLE"]}, batch_size=5, parallel=3)
    queue, steps = list(strategy.initial()), []
    while queue:
        plan = queue.pop(0)
        chunk = list(enumerate(plan.commands))
        parsed = parse_batch_reply({"result": run_batch(batch_payload(chunk), execute)})
        results, failures = split_reply(parsed, chunk)
        totals = {int(label[1:]): n for label, n in parsed.totals.items()}
        step = strategy.consume(plan, Outcome(results, failures, totals))
        steps.append(step)
        queue.extend(step.plans)
    strategy.finish()
    assert strategy.emitted == sum(step.count() for step in steps)
    return steps


def _with_earlier_record(page, params):
    # The page repeats the record at its cursor (a boundary record sent twice).
    cursor = params.get("filter", {}).get(">ID")
    if not page or cursor is None or int(cursor) % 2:
        return page
    return [{"ID": str(cursor), "TITLE": "repeated"}] + page


@pytest.mark.parametrize("reorder", [
    lambda page, params: page,
    lambda page, params: [dict(r, ID=int(r["ID"])) for r in page],  # int IDs
    _with_earlier_record,                                               # not wholly in range
], ids=["as sent", "int IDs", "a record before the range"])
def test_runs_and_record_by_record_reading_give_the_same_export(monkeypatch, reorder):
    from bitrix_threaded import pagination

    store = DataStore(deals=3000, seed=9)
    fast_steps = _export_steps(store, reorder)
    fast = [(int(r["ID"]), r["TITLE"]) for r in in_order(fast_steps)]
    monkeypatch.setattr(pagination, "_ascending_span", lambda page, key: None)
    slow_steps = _export_steps(store, reorder)
    slow = [(int(r["ID"]), r["TITLE"]) for r in in_order(slow_steps)]
    assert all(not step.runs for step in slow_steps)
    assert any(step.runs for step in fast_steps)
    assert fast == slow
    assert [i for i, _ in fast] == store.ids("deal")  # every record once, in ID order
    assert "repeated" not in {title for _, title in fast}
    if reorder is _with_earlier_record:  # those pages were read record by record
        assert sum(len(step.records) for step in fast_steps) > 50


def test_in_order_joins_runs_and_single_records_by_key_keyless_last():
    from bitrix_threaded.pagination import Step
    steps = [
        Step(runs=[(20, [{"n": 20}, {"n": 21}, {"n": 25}])]),
        Step(records=[(30, {"n": 30}), (None, {"n": "keyless"}), (5, {"n": 5})]),
        Step(runs=[(1, [{"n": 1}, {"n": 2}])], records=[(26, {"n": 26})]),
    ]
    assert [r["n"] for r in in_order(steps)] == [1, 2, 5, 20, 21, 25, 26, 30, "keyless"]
    assert sum(s.count() for s in steps) == 9
    assert [r["n"] for r in steps[2].items()] == [26, 1, 2]


class _InlineRunner:
    """Runs each batch at once, in the calling thread; records what was sent."""

    def __init__(self):
        self.sent = []

    def submit(self, fn, chunk, **kwargs):
        future = Future()
        future.set_result(fn(chunk, **kwargs))
        return future

    def run_batch(self, chunk, **kwargs):
        self.sent.append(chunk[0][1].params["tag"])
        return BatchOutcome({i: [] for i, _ in chunk}, [], {})


class _Tree:
    """Plans named by strings; consuming "a" leads to "a1" and "a2", and so on."""

    method = DEALS

    def __init__(self, roots, depth=2):
        self.roots, self.depth = roots, depth

    def plan(self, tag):
        return Plan((Command(DEALS.name, {"tag": tag}),), tag=tag)

    def initial(self):
        return [self.plan(tag) for tag in self.roots]

    def divisible(self, plan):
        return False

    def consume(self, plan, outcome):
        step = Step()
        if len(plan.tag) < self.depth:
            step.plans.extend(self.plan(plan.tag + k) for k in "12")
        return step

    def finish(self):
        pass


def test_what_a_reply_leads_to_is_sent_before_the_plans_queued_earlier():
    runner = _InlineRunner()
    list(drive(runner, _Tree(["a", "b"]), max_in_flight=1))
    assert runner.sent == ["a", "a1", "a2", "b", "b1", "b2"]


class _Leaves(_Tree):
    """A :class:`_Tree` whose every step holds one record (the plan's tag)."""

    def consume(self, plan, outcome):
        step = super().consume(plan, outcome)
        step.records.append((None, plan.tag))
        return step


def test_a_finished_request_is_replaced_before_its_records_are_handed_out():
    # A consumer that works on each record (writes it out) must not hold the
    # request's place empty while it does: the next plan is already sent.
    runner = _InlineRunner()
    steps = drive(runner, _Leaves(["a", "b"]), max_in_flight=1)
    first = next(steps)
    assert list(first.items()) == ["a"]
    assert runner.sent == ["a", "a1"]
    assert [record for step in steps for record in step.items()] == [
        "a1", "a2", "b", "b1", "b2"]
    assert runner.sent == ["a", "a1", "a2", "b", "b1", "b2"]
