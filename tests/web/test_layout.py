"""What every page's frame carries: a favicon served from this server, and the light/dark theme script in
<head>, blocking (no defer or async), so the saved theme is on <html> before the first paint."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

PAGES = ["/", "/runs/new", "/compare", "/datasets", "/architectures", "/learn/activations", "/login", "/docs"]


@pytest.mark.parametrize("url", PAGES)
def test_every_page_names_the_favicon_and_loads_the_theme_before_anything_paints(client, url):
    html = client.get(url).text
    head = html[:html.index("</head>")]
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in head
    if url == "/docs":
        return  # Swagger UI keeps its own look
    scripts = re.findall(r"<script ([^>]*)>", head)
    assert 'src="/static/js/theme.js"' in scripts  # no defer, no async: it runs before the body is drawn
    assert head.index("/static/js/theme.js") < head.index('rel="stylesheet"')
    assert re.search(r'<button type="button" class="icon theme-toggle" id="theme-toggle" aria-label="Dark mode"', html)


def test_the_favicon_is_a_self_contained_svg(client):
    answer = client.get("/static/favicon.svg")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("image/svg+xml")
    root = ET.fromstring(answer.content)
    assert root.tag == "{http://www.w3.org/2000/svg}svg" and root.get("viewBox") == "0 0 32 32"
    assert "href" not in answer.text and "url(" not in answer.text  # nothing from elsewhere


def test_the_theme_script_keeps_the_choice_and_follows_the_system_otherwise(client):
    script = client.get("/static/js/theme.js").text
    assert 'localStorage.getItem(KEY)' in script and '"trainboard-theme"' in script
    assert "prefers-color-scheme: dark" in script and "root.dataset.theme" in script
    css = client.get("/static/css/app.css").text
    assert ':root[data-theme="dark"]' in css and "prefers-color-scheme" not in css  # one switch: data-theme
