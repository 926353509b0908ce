"""Figures for `/stats`: the queue now, times and ratings over a window, per
agent; as text and as a chart (matplotlib's Agg backend, no display needed).

Times are measured on the bot's own records: first reply = the ticket's
creation to the first agent reply (from Telegram or the helpdesk's UI);
resolution = creation to closing. Days are days in TIMEZONE.
"""

from __future__ import annotations

import io
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.db.models import Message, Ticket, utcnow
from bot.i18n import gettext, ngettext
from bot.services import render
from bridges.base import TicketStatus

WINDOW_DAYS = 30
CHART_DAYS = 14
COMMENTS_SHOWN = 3
COMMENT_EXCERPT = 120


@dataclass(frozen=True, slots=True)
class AgentFigures:
    name: str
    open_assigned: int = 0
    closed: int = 0  # closed in the window, as assignee
    replies: int = 0  # replies to customers in the window
    avg_rating: float | None = None
    ratings: int = 0


@dataclass(frozen=True, slots=True)
class Comment:
    number: str
    stars: int
    text: str


@dataclass(frozen=True, slots=True)
class StatsReport:
    now: datetime
    window_days: int
    open: int
    waiting: int
    closed_today: int
    total: int
    overdue: int  # open tickets past their reply deadline (bot.services.sla)
    first_reply_avg: float | None  # seconds
    first_reply_median: float | None
    resolution_avg: float | None
    resolution_median: float | None
    resolved: int
    avg_rating: float | None
    ratings: int
    rating_counts: dict[int, int]  # stars → how many, in the window
    per_agent: list[AgentFigures]
    # (day, opened, closed) for the last CHART_DAYS days, oldest first.
    daily: list[tuple[date, int, int]] = field(default_factory=list)
    comments: list[Comment] = field(default_factory=list)


def _avg(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


class StatsService:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession],
                 zone: tzinfo = UTC) -> None:
        self._sm = sessionmaker
        self._zone = zone

    async def report(self, now: datetime | None = None, window_days: int = WINDOW_DAYS
                     ) -> StatsReport:
        now = now or utcnow()
        since = now - timedelta(days=window_days)
        day_start = now.astimezone(self._zone).replace(hour=0, minute=0, second=0,
                                                       microsecond=0)
        chart_start = day_start - timedelta(days=CHART_DAYS - 1)
        async with self._sm() as session:
            by_status = {status: count for status, count in (await session.execute(
                select(Ticket.status, func.count()).group_by(Ticket.status))).all()}
            overdue = await session.scalar(
                select(func.count()).select_from(Ticket).where(
                    Ticket.status == TicketStatus.OPEN.value, Ticket.reply_due_at <= now)) or 0
            first_replies = (await session.execute(
                select(Ticket.created_at, Ticket.first_reply_at).where(
                    Ticket.first_reply_at.is_not(None), Ticket.created_at >= since))).all()
            closed = (await session.execute(
                select(Ticket.created_at, Ticket.closed_at, Ticket.assignee_name,
                       Ticket.rating).where(
                    Ticket.status == TicketStatus.CLOSED.value, Ticket.closed_at >= since))
            ).all()
            rated = (await session.execute(
                select(Ticket.rating, Ticket.assignee_name).where(
                    Ticket.rating.is_not(None), Ticket.rated_at >= since))).all()
            open_assigned = (await session.execute(
                select(Ticket.assignee_name, func.count()).where(
                    Ticket.status.in_((TicketStatus.OPEN.value, TicketStatus.WAITING.value)),
                    Ticket.assignee_name.is_not(None)).group_by(Ticket.assignee_name))).all()
            replies = (await session.execute(
                select(Message.author_name, func.count()).where(
                    Message.author_kind == "agent", Message.created_at >= since,
                    Message.author_name.is_not(None)).group_by(Message.author_name))).all()
            opened_days = (await session.scalars(
                select(Ticket.created_at).where(Ticket.created_at >= chart_start))).all()
            comments = (await session.execute(
                select(Ticket.number, Ticket.id, Ticket.rating, Ticket.rating_comment)
                .where(Ticket.rating_comment.is_not(None), Ticket.rated_at >= since)
                .order_by(Ticket.rated_at.desc()).limit(COMMENTS_SHOWN))).all()

        # The queries exclude NULLs; the filters below only tell the type checker.
        waits = [(reply - created).total_seconds() for created, reply in first_replies
                 if reply is not None]
        closed_at = [done for _, done, _, _ in closed if done is not None]
        resolutions = [(done - created).total_seconds() for created, done, _, _ in closed
                       if done is not None]
        stars = [rating for rating, _ in rated if rating is not None]
        closed_today = sum(1 for done in closed_at if done >= day_start)
        return StatsReport(
            now=now, window_days=window_days,
            open=by_status.get(TicketStatus.OPEN.value, 0),
            waiting=by_status.get(TicketStatus.WAITING.value, 0),
            closed_today=closed_today, total=sum(by_status.values()), overdue=overdue,
            first_reply_avg=_avg(waits), first_reply_median=_median(waits),
            resolution_avg=_avg(resolutions), resolution_median=_median(resolutions),
            resolved=len(resolutions),
            avg_rating=_avg([float(s) for s in stars]), ratings=len(stars),
            rating_counts=dict(Counter(stars)),
            per_agent=_per_agent(open_assigned, closed, rated, replies),
            daily=_daily(chart_start.date(), [m.astimezone(self._zone) for m in opened_days],
                         [m.astimezone(self._zone) for m in closed_at]),
            comments=[Comment(number or str(ticket_id), rating or 0, text or "")
                      for number, ticket_id, rating, text in comments],
        )


def _per_agent(open_assigned: Iterable[Any], closed: Iterable[Any], rated: Iterable[Any],
               replies: Iterable[Any]) -> list[AgentFigures]:
    """Agents by name: the helpdesk names assignees and reply authors, and an
    agent's Telegram replies carry the same name."""
    figures: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for name, count in open_assigned:
        figures[name]["open"] += count
    for _, _, name, _ in closed:
        if name:
            figures[name]["closed"] += 1
    for rating, name in rated:
        if name:
            figures[name]["stars"] += rating
            figures[name]["ratings"] += 1
    for name, count in replies:
        figures[name]["replies"] += count
    result = [
        AgentFigures(name=name, open_assigned=int(f["open"]), closed=int(f["closed"]),
                     replies=int(f["replies"]),
                     avg_rating=f["stars"] / f["ratings"] if f["ratings"] else None,
                     ratings=int(f["ratings"]))
        for name, f in figures.items()
    ]
    result.sort(key=lambda a: (-a.closed, -a.replies, -a.open_assigned, a.name))
    return result


def _daily(first_day: date, opened: list[datetime], closed: list[datetime]
           ) -> list[tuple[date, int, int]]:
    opened_by_day = Counter(moment.date() for moment in opened)
    closed_by_day = Counter(moment.date() for moment in closed)
    days = [first_day + timedelta(days=offset) for offset in range(CHART_DAYS)]
    return [(day, opened_by_day[day], closed_by_day[day]) for day in days]


# ---------------------------------------------------------------- as text


def as_text(report: StatsReport, lang: str) -> str:
    def span(seconds: float | None) -> str:
        return render.duration(seconds, lang) if seconds is not None else "—"

    lines = [
        gettext(lang, "stats.title"),
        gettext(lang, "agent.stats", open=report.open, waiting=report.waiting,
                closed_today=report.closed_today, total=report.total),
    ]
    if report.overdue:
        lines.append(gettext(lang, "stats.overdue", count=report.overdue))
    lines += [
        "",
        ngettext(lang, "stats.window", report.window_days),
        gettext(lang, "stats.first_reply", avg=span(report.first_reply_avg),
                median=span(report.first_reply_median)),
        gettext(lang, "stats.resolution", avg=span(report.resolution_avg),
                median=span(report.resolution_median), count=report.resolved),
    ]
    if report.avg_rating is not None:
        spread = " ".join(f"{stars}⭐{report.rating_counts.get(stars, 0)}"
                          for stars in range(5, 0, -1))
        lines.append(ngettext(lang, "stats.rating", report.ratings,
                              rating=f"{report.avg_rating:.1f}", spread=spread))
    else:
        lines.append(gettext(lang, "stats.no_ratings"))
    for comment in report.comments:
        text = comment.text if len(comment.text) <= COMMENT_EXCERPT else (
            comment.text[:COMMENT_EXCERPT] + "…")
        lines.append(f"   #{render.escape(comment.number)} {'⭐' * comment.stars}: "
                     f"<i>{render.escape(text)}</i>")
    if report.per_agent:
        lines += ["", gettext(lang, "stats.per_agent")]
    for agent in report.per_agent:
        rating = (f" · ⭐ {agent.avg_rating:.1f} ({agent.ratings})"
                  if agent.avg_rating is not None else "")
        lines.append("• " + gettext(lang, "stats.agent_line", name=render.escape(agent.name),
                                    open=agent.open_assigned, closed=agent.closed,
                                    replies=agent.replies) + rating)
    return "\n".join(lines)[: render.TELEGRAM_TEXT_LIMIT]


# ---------------------------------------------------------------- as a chart


def chart_png(report: StatsReport, lang: str) -> bytes:
    """The report as a PNG: tickets opened and closed per day, ratings, and
    per agent. Synchronous and CPU-bound: run it in a thread. Uses the
    object-oriented API (no pyplot), so concurrent charts share no state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(10, 7.5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(2, 2)
    figure.suptitle(ngettext(lang, "stats.chart_title", report.window_days),
                    fontsize=14)

    daily = figure.add_subplot(grid[0, :])
    labels = [day.strftime("%d.%m") for day, _, _ in report.daily]
    positions = list(range(len(labels)))
    width = 0.4
    daily.bar([p - width / 2 for p in positions], [o for _, o, _ in report.daily], width,
              label=gettext(lang, "stats.chart_opened"), color="#4e79a7")
    daily.bar([p + width / 2 for p in positions], [c for _, _, c in report.daily], width,
              label=gettext(lang, "stats.chart_closed"), color="#59a14f")
    daily.set_xticks(positions, labels, rotation=45, fontsize=8)
    daily.set_title(ngettext(lang, "stats.chart_daily", CHART_DAYS))
    daily.yaxis.set_major_locator(MaxNLocator(integer=True))
    daily.legend(loc="upper left")

    ratings = figure.add_subplot(grid[1, 0])
    stars = [1, 2, 3, 4, 5]
    # ★, not the ⭐ emoji: the chart's font (DejaVu Sans) has the one, not the other.
    ratings.bar([f"{s}★" for s in stars], [report.rating_counts.get(s, 0) for s in stars],
                color=["#e15759", "#f28e2b", "#edc948", "#76b7b2", "#59a14f"])
    title = gettext(lang, "stats.chart_ratings")
    if report.avg_rating is not None:
        title += f" · {report.avg_rating:.1f}"
    ratings.set_title(title)
    ratings.yaxis.set_major_locator(MaxNLocator(integer=True))

    agents = figure.add_subplot(grid[1, 1])
    top = report.per_agent[:8]
    names = [a.name[:16] for a in top]
    rows = list(range(len(top)))
    agents.barh([r - 0.2 for r in rows], [a.closed for a in top], 0.4,
                label=gettext(lang, "stats.chart_closed"), color="#59a14f")
    agents.barh([r + 0.2 for r in rows], [a.replies for a in top], 0.4,
                label=gettext(lang, "stats.chart_replies"), color="#4e79a7")
    agents.set_yticks(rows, names)
    agents.invert_yaxis()
    agents.set_title(gettext(lang, "stats.chart_agents"))
    agents.xaxis.set_major_locator(MaxNLocator(integer=True))
    if top:
        agents.legend(loc="lower right")

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
