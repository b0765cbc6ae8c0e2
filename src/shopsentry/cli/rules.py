"""`shopsentry rules ...` and `shopsentry lists ...`: analyst rules and block/allow lists.

Changes go to the control topic, from which every running detector picks them up within
seconds (`docs/rules.md`); `rules backtest` runs a draft over the warehouse's history.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from shopsentry.cli.common import parse_duration, settings_of
from shopsentry.errors import ConfigError

if TYPE_CHECKING:
    from shopsentry.config import Settings
    from shopsentry.rules.control import Change
    from shopsentry.rules.model import Rule, RuleSet

ActionOpt = Literal["block", "review", "allow"]
RuleName = Annotated[str, typer.Argument(help="Rule name.")]
ListName = Annotated[Literal["block", "allow"], typer.Argument(help="block or allow.")]


def _topic(settings: Settings) -> str:
    return settings.topics.rules.name


def _current(settings: Settings) -> RuleSet:
    from shopsentry.bus import BusConfig, open_log
    from shopsentry.rules.control import read_rule_set

    log = open_log(BusConfig.from_settings(settings))
    try:
        return read_rule_set(log, _topic(settings))
    finally:
        log.close()


def _publish(settings: Settings, changes: list[Change]) -> int:
    from shopsentry.bus import BusConfig, open_log
    from shopsentry.rules.control import publish, read_rule_set

    log = open_log(BusConfig.from_settings(settings))
    try:
        producer = log.producer()
        try:
            publish(producer, _topic(settings), changes)
        finally:
            producer.close()
        return read_rule_set(log, _topic(settings)).version
    finally:
        log.close()


def _check(expression: str) -> None:
    from shopsentry.features import FEATURE_NAMES
    from shopsentry.rules.engine import vocabulary
    from shopsentry.rules.language import compile_rule

    compile_rule(expression, vocabulary(FEATURE_NAMES))


def _who(owner: str | None) -> str:
    import getpass

    return owner or getpass.getuser()


def _day(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"bad date {text!r}", hint="write it as YYYY-MM-DD") from None


rules_app = typer.Typer(help="Analyst rules: write, backtest, activate.", no_args_is_help=True)
lists_app = typer.Typer(
    help="Block and allow lists of cards, devices, IPs, users, ...", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(rules_app, name="rules")
    app.add_typer(lists_app, name="lists")


@rules_app.command("list")
def list_(ctx: typer.Context) -> None:
    """The rule set every detector applies, with its version."""
    from rich.console import Console
    from rich.table import Table

    rule_set = _current(settings_of(ctx))
    table = Table("name", "action", "mode", "priority", "expression", "owner",
                  title=f"rule set version {rule_set.version}")  # fmt: skip
    for r in sorted(rule_set.rules, key=lambda r: (r.priority, r.name)):
        mode = r.mode if r.enabled else "disabled"
        table.add_row(r.name, r.action, mode, str(r.priority), r.expression, r.owner)
    Console().print(table)


@rules_app.command("check")
def check(
    expression: Annotated[str, typer.Argument(help="A CEL condition.")],
) -> None:
    """Parse and type-check a condition; print where it is wrong."""
    _check(expression)
    typer.echo("ok")


@rules_app.command("add")
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Rule name (letters, digits, _ . -).")],
    expression: Annotated[str, typer.Argument(help='The CEL condition, e.g. "score > 0.5".')],
    action: Annotated[ActionOpt, typer.Option(help="What the rule does when it fires.")] = "review",
    mode: Annotated[
        Literal["shadow", "active"], typer.Option(help="shadow: count, never act.")
    ] = "shadow",
    priority: Annotated[int, typer.Option(help="Lower runs first.")] = 100,
    owner: Annotated[str | None, typer.Option(help="Who owns it (default: you).")] = None,
    note: Annotated[str, typer.Option(help="Why the rule exists.")] = "",
) -> None:
    """Add or replace a rule (checked first; shadow mode unless --mode active)."""
    from shopsentry.rules.control import rule_change
    from shopsentry.rules.model import Rule

    _check(expression)
    rule = Rule(name=name, expression=expression, action=action, mode=mode,
                priority=priority, owner=_who(owner), note=note)  # fmt: skip
    version = _publish(settings_of(ctx), [rule_change(rule, _who(owner))])
    typer.echo(f"rule {name} saved ({mode}); rule set version {version}")


def _update(ctx: typer.Context, name: str, **changes: object) -> None:
    """Publish rule NAME with CHANGES applied: the one path of activate, shadow and disable."""
    from shopsentry.rules.control import rule_change

    settings = settings_of(ctx)
    current: Rule | None = _current(settings).rule(name)
    if current is None:
        raise ConfigError(f"no rule named {name!r}", hint="see `shopsentry rules list`")
    version = _publish(settings, [rule_change(current.model_copy(update=changes), _who(None))])
    typer.echo(f"rule {name}: {', '.join(f'{k}={v}' for k, v in changes.items())}; "
               f"rule set version {version}")  # fmt: skip


@rules_app.command("activate")
def activate(ctx: typer.Context, name: RuleName) -> None:
    """Let a rule act on live purchases."""
    _update(ctx, name, mode="active", enabled=True)


@rules_app.command("shadow")
def shadow(ctx: typer.Context, name: RuleName) -> None:
    """Keep evaluating and counting a rule, without acting."""
    _update(ctx, name, mode="shadow")


@rules_app.command("disable")
def disable(ctx: typer.Context, name: RuleName) -> None:
    """Stop evaluating a rule (it stays in the history)."""
    _update(ctx, name, enabled=False)


@rules_app.command("backtest")
def backtest_(
    ctx: typer.Context,
    expression: Annotated[str, typer.Argument(help="The draft CEL condition.")],
    action: Annotated[ActionOpt, typer.Option(help="What it would do.")] = "review",
    since: Annotated[str | None, typer.Option(help="First day, YYYY-MM-DD.")] = None,
    until: Annotated[str | None, typer.Option(help="Day after the last, YYYY-MM-DD.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """What a draft rule would have done on past purchases, per day and in total."""
    from shopsentry.rules.backtest import backtest
    from shopsentry.warehouse.db import connect

    settings = settings_of(ctx)
    with connect(settings.warehouse_path, read_only=True) as conn:
        report = backtest(conn, expression, action, since=_day(since), until=_day(until),
                          entries=_current(settings).entries)  # fmt: skip
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
        return
    _print_report(report)


@lists_app.command("show")
def show(ctx: typer.Context) -> None:
    """Every live list entry."""
    from rich.console import Console
    from rich.table import Table

    now = datetime.now(UTC)
    rule_set = _current(settings_of(ctx))
    table = Table("list", "entity", "value", "expires", "reason", "added by",
                  title=f"rule set version {rule_set.version}")  # fmt: skip
    for e in sorted(rule_set.entries, key=lambda e: e.key):
        if e.live_at(now):
            expires = e.expires_at.isoformat() if e.expires_at else "never"
            table.add_row(e.list, e.entity, e.value, expires, e.reason, e.added_by)
    Console().print(table)


@lists_app.command("add")
def add_entry(
    ctx: typer.Context,
    list_name: ListName,
    entity: Annotated[
        str, typer.Argument(help="user, card, device, ip, shipping_address, store, terminal.")
    ],
    value: Annotated[str, typer.Argument(help="The entity's id or fingerprint.")],
    reason: Annotated[str, typer.Option(help="Why.")] = "",
    expires_in: Annotated[str | None, typer.Option(help="e.g. 30d, 12h (default: never).")] = None,
) -> None:
    """Put one value on a list."""
    from shopsentry.rules.control import entry_change
    from shopsentry.rules.model import ListEntry

    expires = (datetime.now(UTC) + timedelta(seconds=parse_duration(expires_in))
               if expires_in else None)  # fmt: skip
    entry = ListEntry.model_validate({"list": list_name, "entity": entity, "value": value,
                                      "reason": reason, "expires_at": expires,
                                      "added_by": _who(None)})  # fmt: skip
    version = _publish(settings_of(ctx), [entry_change(entry, _who(None))])
    typer.echo(f"{list_name} list: {entity} {value} added; rule set version {version}")


@lists_app.command("remove")
def remove_entry(
    ctx: typer.Context,
    list_name: ListName,
    entity: Annotated[str, typer.Argument(help="The entity kind.")],
    value: Annotated[str, typer.Argument(help="The value.")],
) -> None:
    """Take a value off a list now (the entry expires; the history keeps it)."""
    from shopsentry.rules.control import entry_change

    settings = settings_of(ctx)
    key = f"{list_name}:{entity}:{value}"
    entry = next((e for e in _current(settings).entries if e.key == key), None)
    if entry is None:
        raise ConfigError(f"{value!r} is not on the {list_name} list for {entity}")
    expired = entry.model_copy(update={"expires_at": datetime.now(UTC)})
    version = _publish(settings, [entry_change(expired, _who(None))])
    typer.echo(f"{list_name} list: {entity} {value} removed; rule set version {version}")


@lists_app.command("import")
def import_(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="CSV with list,entity,value,reason,expires_at.")],
    list_name: Annotated[
        Literal["block", "allow"] | None,
        typer.Option("--list", help="The list, when the CSV has no list column."),
    ] = None,
) -> None:
    """Bulk import entries from CSV; rows that cannot be read are listed with the reason."""
    from shopsentry.rules.control import entry_change
    from shopsentry.rules.lists import read_csv

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    try:
        result = read_csv(text, added_by=_who(None), default_list=list_name)
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    for bad in result.rejected:
        typer.echo(f"{path}:{bad.row}: {bad.reason}", err=True)
    version = _publish(settings_of(ctx), [entry_change(e, _who(None)) for e in result.entries])
    typer.echo(f"{len(result.entries)} entries imported, {len(result.rejected)} rejected; "
               f"rule set version {version}")  # fmt: skip
    if result.rejected:
        raise typer.Exit(1)


def _print_report(report: object) -> None:
    from rich.console import Console
    from rich.table import Table

    from shopsentry.rules.backtest import BacktestReport, Tally

    assert isinstance(report, BacktestReport)

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1%}"

    table = Table("day", "purchases", "hits", "fraud caught", "precision", "new reviews",
                  "overlap with model", "amount saved", "blocked wrongly", "errors",
                  title=f"{report.action} if {report.expression}")  # fmt: skip

    def row(label: str, t: Tally) -> None:
        table.add_row(label, f"{t.purchases:,}", f"{t.hits:,}", f"{t.fraud_caught:,}",
                      pct(t.precision), f"{t.extra_reviews:,}", f"{t.overlap_with_model:,}",
                      f"{t.amount_saved:,.2f}", f"{t.amount_blocked_wrongly:,.2f}",
                      f"{t.errors:,}")  # fmt: skip

    for day, tally in sorted(report.days.items()):
        row(day.isoformat(), tally)
    row("total", report.total)
    Console().print(table)
