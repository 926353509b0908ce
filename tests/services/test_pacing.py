from __future__ import annotations

from bot.services.pacing import TelegramPacer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_private_chat_one_per_second() -> None:
    clock = Clock()
    pacer = TelegramPacer(clock=clock)
    assert pacer.delay_for(42) == 0
    pacer.record(42)
    assert 0.9 < pacer.delay_for(42) <= 1.0
    assert pacer.delay_for(43) <= 1 / 30 + 1e-9  # another chat: only the global pace
    clock.now += 1.0
    assert pacer.delay_for(42) == 0


def test_group_never_more_than_twenty_in_any_minute() -> None:
    clock = Clock()
    pacer = TelegramPacer(clock=clock)
    group = -1001
    sent: list[float] = []
    while clock.now < 1000 + 600:  # ten minutes of a group that always has something to send
        if pacer.delay_for(group) == 0:
            pacer.record(group)
            sent.append(clock.now)
        clock.now += 0.05
    for start in sent:
        assert sum(1 for t in sent if start <= t < start + 60) <= 20
    assert len(sent) >= 150  # ~15 a minute sustained, plus the initial burst


def test_group_sends_are_spread_not_bunched() -> None:
    clock = Clock()
    pacer = TelegramPacer(clock=clock)
    group = -1001
    for _ in range(5):
        assert pacer.delay_for(group) == 0
        pacer.record(group)
        clock.now += 0.1
    assert pacer.group_budget(group) == 0
    assert 3 < pacer.delay_for(group) <= 4  # the next slot is seconds away, not a minute
    clock.now += 4.0
    assert pacer.delay_for(group) == 0
    assert pacer.group_budget(group) == 1


def test_global_rate() -> None:
    clock = Clock()
    pacer = TelegramPacer(clock=clock, global_rate=30)
    for chat in range(1, 31):
        pacer.record(chat)
    # 30 sends used a second's worth of the global budget, less the 0.1 s a
    # late sender may catch up on.
    assert 0.89 < pacer.delay_for(999) <= 0.91
    clock.now += 5.0  # idle: the catch-up never grows past 0.1 s
    for chat in range(31, 41):
        pacer.record(chat)
    assert 0.22 < pacer.delay_for(999) <= 0.24  # 10 sends: 1/3 s less 0.1 s


def test_pause_after_429() -> None:
    clock = Clock()
    pacer = TelegramPacer(clock=clock)
    pacer.pause(7, 5)
    assert 4.9 < pacer.delay_for(7) <= 5
    assert pacer.delay_for(8) == 0
    pacer.pause(None, 3)
    assert 2.9 < pacer.delay_for(8) <= 3
