"""The data sets page's previews through TestClient: a table of rows for a CSV upload (a picture of a row
says nothing, and the sample endpoint refuses one), and a 2-D points set as one scatter with a legend
of its class colours, nothing ringed."""

from __future__ import annotations

import io
import re

import pytest
from PIL import Image

from tests.conftest import LOCAL


@pytest.fixture
def client(data_dir):
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app(start_executor=False), base_url=LOCAL) as test_client:
        yield test_client


def card(html: str, name: str) -> str:
    return re.search(rf'<article[^>]*id="dataset-{name}".*?</article>', html, re.S).group(0)


def test_a_csv_data_set_shows_its_first_rows_not_pictures(client):
    header = "sepal_length,sepal_width,petal_length,petal_width,a,b,c,species"
    lines = [f"{5 + i / 10},{3 + i % 4 / 10},{1.5 + i % 3},{0.25 * (i % 5)},1,2,3,{['setosa', 'virginica'][i % 2]}"
             for i in range(40)]
    answer = client.post("/api/datasets", data={"name": "flowers", "label_column": "species"},
                         files={"file": ("flowers.csv", "\n".join([header, *lines]).encode(), "text/csv")})
    assert answer.status_code == 201, answer.text
    assert client.get("/api/datasets/flowers/samples/0.png").status_code == 422  # no picture of a row

    flowers = card(client.get("/datasets").text, "flowers")
    assert "<img" not in flowers
    table = re.search(r'<table[^>]*aria-label="First test rows">.*?</table>', flowers, re.S).group(0)
    columns = re.findall(r"<th[^>]*>([^<]*)</th>", table)
    assert columns == ["label", "sepal_length", "sepal_width", "petal_length", "petal_width", "a", "b"]
    rows = re.findall(r"<tr>(.*?)</tr>", re.search(r"<tbody>(.*?)</tbody>", table, re.S).group(1), re.S)
    assert len(rows) == 5
    cells = [re.findall(r"<td[^>]*>([^<]*)</td>", row) for row in rows]
    assert all(len(row) == 7 and row[0] in ("setosa", "virginica") for row in cells)
    assert all(float(row[1]) >= 5 for row in cells)  # the values themselves, as numbers
    assert "1 more feature column not shown" in flowers


def test_a_points_data_set_is_one_scatter_with_a_legend_and_no_ring(client):
    spirals = card(client.get("/datasets").text, "spirals")
    assert re.findall(r'<img src="([^"]+)"', spirals) == ["/api/datasets/spirals/points.png?split=test"]
    legend = re.findall(r'<span class="swatch" style="background: (#[0-9a-f]{6})"></span>([^<]+)</span>', spirals)
    assert legend == [("#1f77b4", "0"), ("#ff7f0e", "1"), ("#2ca02c", "2")]

    answer = client.get("/api/datasets/spirals/points.png")
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(answer.content)).convert("RGB")
    colours = {colour for _, colour in image.getcolors(maxcolors=1 << 16)}
    assert (0, 0, 0) not in colours  # no black ring: every dot is a class colour (or its anti-aliasing)
    assert {(31, 119, 180), (255, 127, 14), (44, 160, 44)} <= colours
    assert client.get("/api/datasets/digits/points.png").status_code == 422


def test_the_gallery_picture_of_one_point_rings_it(client):
    """Misclassified points in a run's gallery: the ring marks which sample it is (the gallery says so)."""
    image = Image.open(io.BytesIO(client.get("/api/datasets/spirals/samples/3.png").content)).convert("RGB")
    assert (0, 0, 0) in {colour for _, colour in image.getcolors(maxcolors=1 << 16)}
