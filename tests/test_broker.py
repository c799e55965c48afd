"""rank_sites: explicit sites in order, filters, and a reason for every site dropped."""

from __future__ import annotations

import pytest

from stratoflow.broker import SiteOffer, rank_sites
from stratoflow.errors import TemplateError

GIB = 1 << 30
OFFERS = {
    "big": SiteOffer("big", "openstack", 64, 256 * GIB),
    "small": SiteOffer("small", "local", 2, 4 * GIB),
    "k8s": SiteOffer("k8s", "kubernetes", 16, 64 * GIB),
    "store": SiteOffer("store", "s3", 0, 0, runs_jobs=False),
}


def test_every_fitting_site_in_catalogue_order():
    assert rank_sites({}, 2, GIB, OFFERS) == ["big", "small", "k8s"]


def test_explicit_sites_keep_their_order_and_drop_what_cannot_fit():
    assert rank_sites({"sites": ["k8s", "small", "big"]}, 8, GIB, OFFERS) == ["k8s", "big"]
    assert rank_sites({"site": "small"}, 1, GIB, OFFERS) == ["small"]


def test_kinds_filter():
    assert rank_sites({"kinds": ["kubernetes", "local"]}, 1, GIB, OFFERS) == ["small", "k8s"]


def test_no_site_left_names_each_reason():
    with pytest.raises(TemplateError) as err:
        rank_sites({"sites": ["small", "store", "k8s"]}, 4, 128 * GIB, OFFERS)
    (issue,) = err.value.issues
    assert issue.path == "placement"
    assert issue.message == (
        "no site can run this deployment: small: needs 4 cores, site has 2;"
        " store: kind 's3' stores or moves data, it runs no jobs;"
        f" k8s: needs {128 * GIB} bytes of memory, site has {64 * GIB}"
    )


@pytest.mark.parametrize(
    ("placement", "path"),
    [({"site": "nowhere"}, "placement.site"), ({"sites": ["big", "nope"]}, "placement.sites[1]")],
)
def test_unknown_site_is_named_with_the_known_ones(placement, path):
    with pytest.raises(TemplateError) as err:
        rank_sites(placement, 1, 1, OFFERS)
    (issue,) = err.value.issues
    assert issue.path == path and "known sites: big, k8s, small, store" in issue.message
