"""Filters on a report page: drop-downs that hide the items (cards, table rows) not matching.

A page lists items of several kinds (a task, a split...) and a reader wants one kind at a time.
Each item carries its values as ``data-<key>`` attributes and the marker ``data-filter-item``
(:func:`filter_attrs`); :func:`filter_bar` draws one ``<select data-filter="<key>">`` per key;
:data:`FILTER_SCRIPT` (pass it to ``page(..., scripts=[FILTER_SCRIPT])``: the page's
Content-Security-Policy admits it by its hash) hides every item whose value differs from a
chosen one. The choice lives in the address's fragment (``report.html#task=r2av&split=M``), so
a filtered view can be bookmarked or linked, and a page opened with one starts filtered.

The script records what it did for a headless browser to read: ``data-filter-state`` (the
fragment it applied) and ``data-filter-shown`` (``<shown>/<items>``) on ``<body>``; inside any
element marked ``data-filter-group``, the element marked ``data-filter-count`` gets the number
of that group's items still shown. Without the script every item shows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .page import esc, slug


@dataclass(frozen=True)
class Filter:
    """One drop-down: the ``data-<key>`` it matches, its label, and its choices as
    (value, label) pairs (an "all" choice comes first by itself)."""

    key: str
    label: str
    choices: Sequence[tuple[str, str]]


def filter_attrs(values: Mapping[str, object]) -> str:
    """Attribute text marking an element as a filtered item with these ``data-<key>`` values
    (keys as :func:`~.page.slug` words)."""
    return "data-filter-item " + " ".join(f'data-{slug(k)}="{esc(v)}"'
                                          for k, v in values.items())


def filter_bar(filters: Sequence[Filter], testid: str = "filters") -> str:
    """The drop-downs, one per filter, in a bar that stays at the top while scrolling."""
    parts = []
    for f in filters:
        key = slug(f.key)
        opts = '<option value="">all</option>' + "".join(
            f'<option value="{esc(v)}">{esc(label)}</option>' for v, label in f.choices)
        parts.append(f'<label>{esc(f.label)} <select data-filter="{esc(key)}" '
                     f'data-testid="filter-{esc(key)}">{opts}</select></label>')
    return f'<div class="filters" data-testid="{esc(testid)}">{"".join(parts)}</div>'


FILTER_SCRIPT = (
    "(function(){var sel=document.querySelectorAll('select[data-filter]'),"
    "items=document.querySelectorAll('[data-filter-item]');"
    "function fromHash(){var o={};location.hash.replace(/^#/,'').split('&').forEach("
    "function(p){var i=p.indexOf('=');if(i>0){try{o[decodeURIComponent(p.slice(0,i))]="
    "decodeURIComponent(p.slice(i+1));}catch(e){}}});return o;}"
    "function apply(){var want={},state=[],shown=0;sel.forEach(function(s){if(s.value){"
    "want[s.dataset.filter]=s.value;state.push(encodeURIComponent(s.dataset.filter)+'='+"
    "encodeURIComponent(s.value));}});"
    "items.forEach(function(e){var ok=true;for(var k in want){if(e.getAttribute('data-'+k)"
    "!==want[k]){ok=false;}}e.hidden=!ok;if(ok){shown++;}});"
    "document.querySelectorAll('[data-filter-group]').forEach(function(g){"
    "var c=g.querySelector('[data-filter-count]');if(c){c.textContent=String("
    "g.querySelectorAll('[data-filter-item]:not([hidden])').length);}});"
    "document.body.dataset.filterState=state.join('&');"
    "document.body.dataset.filterShown=shown+'/'+items.length;return state.join('&');}"
    "function fromAddress(){var h=fromHash();sel.forEach(function(s){var v=h[s.dataset.filter]"
    "||'';s.value=Array.prototype.some.call(s.options,function(o){return o.value===v;})?v:'';"
    "});apply();}"
    "sel.forEach(function(s){s.addEventListener('change',function(){var h=apply();"
    "if(location.hash.replace(/^#/,'')!==h){location.hash=h;}});});"
    "window.addEventListener('hashchange',fromAddress);fromAddress();})();")
