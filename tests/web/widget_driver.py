"""Drives the chat widget in the browser the way a customer would: type, or click a quick reply,
then wait for the bot's turn to finish (the typing indicator goes away after its last message)."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Page, expect

from tests.conftest import Stack
from tests.web.conftest import artifact

MAX_TURNS = 12


class Widget:
    def __init__(self, page: Page, stack: Stack) -> None:
        self.page = page
        self.stack = stack

    def open(self) -> None:
        self.page.goto(self.stack.web_url + "/")
        self.wait_connected()

    def wait_connected(self) -> None:
        expect(self.page.locator(".fin-chat")).to_have_attribute("data-connected", "true", timeout=60_000)
        expect(self.page.get_by_label("输入消息")).to_be_enabled()

    @property
    def bot_texts(self) -> list[str]:
        return self.page.locator(".fin-chat-bot .fin-chat-text").all_text_contents()

    @property
    def expecting(self) -> str | None:
        return self.page.locator(".fin-chat").get_attribute("data-expect")

    def _await_turn(self, bot_messages_before: int) -> None:
        self.page.wait_for_function(
            "n => document.querySelectorAll('.fin-chat-bot').length > n"
            " && document.querySelector('.fin-chat-typing').hidden", arg=bot_messages_before, timeout=30_000)

    def say(self, text: str) -> None:
        before = self.page.locator(".fin-chat-bot").count()
        box = self.page.get_by_label("输入消息")
        box.fill(text)
        box.press("Enter")  # the keyboard alone: type and press Enter
        self._await_turn(before)

    def choose(self, title: str) -> None:
        before = self.page.locator(".fin-chat-bot").count()
        self.page.get_by_role("button", name=title, exact=True).click()
        self._await_turn(before)

    def answer(self, customer: dict[str, Any], say: dict[str, str], confirm: str) -> None:
        """Answer what the bot asks (data-expect) until it stops asking."""
        for _ in range(MAX_TURNS):
            slot = self.expecting
            if slot is None:
                return
            if slot == "confirmed":
                self.choose(confirm)
            elif slot == "otp_code":
                self.say(self.stack.latest_otp(customer["phone"]))
            elif slot in ("phone_number", "customer_name", "id_last4"):
                self.say(customer[{"phone_number": "phone", "customer_name": "name", "id_last4": "id_last4"}[slot]])
            else:
                self.say(say[slot])
        raise AssertionError(f"the bot kept asking: {self.bot_texts}")

    def screenshot(self, name: str) -> None:
        self.page.screenshot(path=str(artifact(name)), full_page=True)
