"""The answer to an arithmetic captcha (``7+3=?``, ``12×4=``), by a small parser of its own.

Numbers are whole numbers; the operators are ``+`` and ``-``, and ``×``, ``x``, ``X``, ``*``
for multiplication and ``÷``, ``/`` for division, with the usual precedence (multiplication
and division first, left to right). A trailing ``=``, ``?`` or ``=?`` is the question and
is ignored. Nothing is ever passed to ``eval``. A reading without an integer answer (a
malformed expression, division by zero or with a remainder) is an :class:`ExpressionError`
that says why.
"""

from __future__ import annotations

import re

OPERATORS = {"+": "+", "-": "-", "×": "*", "x": "*", "X": "*", "*": "*", "÷": "/", "/": "/"}
QUESTION = re.compile(r"=?\??$")
EXPRESSION_SYMBOLS = "0123456789=?" + "".join(OPERATORS)


class ExpressionError(ValueError):
    """A reading that is not an arithmetic expression with an integer answer."""


def _tokens(text: str) -> list[int | str]:
    """Numbers and operators, alternating, starting and ending with a number."""
    body = QUESTION.sub("", text.strip())
    tokens: list[int | str] = []
    number = ""
    for symbol in body:
        if symbol.isdigit():
            number += symbol
        elif symbol in OPERATORS:
            if not number:
                raise ExpressionError(f"{text!r}: an operator without a number before it")
            tokens += [int(number), OPERATORS[symbol]]
            number = ""
        else:
            raise ExpressionError(f"{text!r}: {symbol!r} is not part of an arithmetic "
                                  "expression")
    if not number:
        raise ExpressionError(f"{text!r}: no number " + ("after the last operator" if tokens
                                                         else "in it"))
    tokens.append(int(number))
    if len(tokens) < 3:
        raise ExpressionError(f"{text!r}: no operator in it")
    return tokens


def _divide(a: int, b: int, text: str) -> int:
    if b == 0:
        raise ExpressionError(f"{text!r}: division by zero")
    if a % b:
        raise ExpressionError(f"{text!r}: {a} / {b} is not a whole number")
    return a // b


def answer(text: str) -> int:
    """The integer value of an arithmetic reading such as ``7+3=?``."""
    tokens = _tokens(text)
    terms: list[int] = [tokens[0]]  # products and quotients first, then the sums
    signs: list[str] = []
    for operator, value in zip(tokens[1::2], tokens[2::2]):
        if operator == "*":
            terms[-1] *= value
        elif operator == "/":
            terms[-1] = _divide(terms[-1], value, text)
        else:
            signs.append(operator)
            terms.append(value)
    total = terms[0]
    for sign, term in zip(signs, terms[1:]):
        total = total + term if sign == "+" else total - term
    return total


def is_expression(text: str) -> bool:
    """Whether ``text`` reads as an arithmetic question (whatever its answer)."""
    try:
        _tokens(text)
    except ExpressionError:
        return False
    return True
