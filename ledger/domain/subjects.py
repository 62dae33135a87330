"""Naming the person a question is about (SPEC §8): by pseudonym, or by a natural identifier.

A pseudonym is per controller, so an e-mail address or an account id names a person only
together with its controller; a pseudonym may leave the controller out when only one
controller knows it (the ledger finds which)."""

from __future__ import annotations

from dataclasses import dataclass

from ledger.domain.errors import InvalidSubject


@dataclass(frozen=True, slots=True)
class SubjectSelector:
    """Exactly one of ``subject_id`` (the pseudonym), ``email_address`` or ``account_id``,
    and the ``controller`` (required with a natural identifier). Prefer the named
    constructors; invalid combinations raise InvalidSubject."""

    subject_id: str | None = None
    email_address: str | None = None
    account_id: str | None = None
    controller: str | None = None

    def __post_init__(self) -> None:
        for name in ("subject_id", "email_address", "account_id", "controller"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise InvalidSubject(f"{name} must be a non-empty string", "malformed")
        natural = self.email_address is not None or self.account_id is not None
        # The order of the checks is the order the CLI always reported them in.
        if self.subject_id is None and not natural:
            raise InvalidSubject("name the subject: a pseudonym, or an e-mail address or "
                                 "account id with its controller", "none")
        if self.subject_id is not None and natural:
            raise InvalidSubject("name the subject by a pseudonym or by an e-mail address or "
                                 "account id, not both", "both")
        if natural and self.controller is None:
            raise InvalidSubject("an e-mail address or account id needs its controller (the "
                                 "pseudonym is per controller)", "no-controller")
        if self.email_address is not None and self.account_id is not None:
            raise InvalidSubject("give exactly one of an e-mail address or an account id",
                                 "email-and-account")

    @classmethod
    def pseudonym(cls, subject_id: str, controller: str | None = None) -> SubjectSelector:
        """By pseudonym; without a controller, the one controller that knows it."""
        return cls(subject_id=subject_id, controller=controller)

    @classmethod
    def email(cls, controller: str, address: str) -> SubjectSelector:
        return cls(email_address=address, controller=controller)

    @classmethod
    def account(cls, controller: str, account_id: str) -> SubjectSelector:
        return cls(account_id=account_id, controller=controller)

    def for_controller(self, controller: str) -> SubjectSelector:
        """The same person, with the controller found for a pseudonym."""
        return SubjectSelector(self.subject_id, self.email_address, self.account_id, controller)

    def __repr__(self) -> str:
        # Never an e-mail address or account id in a log line or traceback: they are personal.
        named = "pseudonym" if self.subject_id is not None else (
            "email" if self.email_address is not None else "account")
        shown = f"{self.subject_id[:16]}…" if self.subject_id is not None else "…"
        return f"SubjectSelector.{named}({shown!r}, controller={self.controller!r})"
