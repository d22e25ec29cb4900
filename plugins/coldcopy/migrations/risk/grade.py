"""A file's grade: the worst of its statements' findings, the reasons for it, and whether it is security-relevant."""

from __future__ import annotations

from dataclasses import dataclass, field

# worst first; "ungraded": something the grader cannot read (dynamic SQL, a call into code it cannot see, a kind of
# statement it does not know): two people read it, as for a destructive one
GRADES = ("destructive", "ungraded", "blocking", "data-dependent", "safe")
TWO_PEOPLE = ("destructive", "ungraded")


@dataclass
class Grade:
    file: str
    grade: str = "safe"
    reasons: list[str] = field(default_factory=list)
    security: list[str] = field(default_factory=list)
    author: str | None = None

    def worsen(self, grade: str, reason: str) -> None:
        if GRADES.index(grade) < GRADES.index(self.grade):
            self.grade = grade
        if (line := f"{grade}: {reason}") not in self.reasons:
            self.reasons.append(line)

    def secure(self, reason: str) -> None:
        if reason not in self.security:
            self.security.append(reason)

    @property
    def approvals(self) -> int:
        return 2 if self.grade in TWO_PEOPLE or self.security else 1

    def as_dict(self) -> dict:
        return {"file": self.file, "grade": self.grade, "reasons": self.reasons, "security": self.security,
                "author": self.author, "approvals": self.approvals}


def worst(grades: list[Grade]) -> Grade:
    return min(grades, key=lambda g: GRADES.index(g.grade))
