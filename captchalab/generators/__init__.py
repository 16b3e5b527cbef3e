"""Synthetic captcha generators (torch-free): schemes as TOML files, drawn fast."""

from captchalab.generators.base import ANNOTATIONS_FILE, Rendered, generate, render, schemes
from captchalab.generators.scheme import Scheme, SchemeError, load_scheme, parse_scheme

__all__ = ["ANNOTATIONS_FILE", "Rendered", "Scheme", "SchemeError", "generate", "load_scheme",
           "parse_scheme", "render", "schemes"]
