"""The template dashboard of a host, rendered by the real frontend in headless Chromium.

Chromium gets no cookies from us, so the frontend's own guest login is used: the test gives
the built-in `guest` user (6.0 and 7.0 data) read access to the test hosts' group, takes it
out of the "Disabled" group, and sets its start page (`url`) to the host's dashboard. Chromium
then opens `index.php?enter=guest`: the frontend signs it in as guest and redirects it to
that dashboard, whose widgets load as in any browser. One run dumps the DOM (checked: every
widget of the template's dashboard is there, with its graphs, and no permission or login
error), a second one takes the 1920x1080 screenshot.
"""
from __future__ import annotations

import html
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

CHROMIUM_TIMEOUT = 120.0
VIRTUAL_TIME_MS = 20000
GUEST_ID = "2"
GUESTS_GROUP = "8"
DISABLED_GROUP = "9"


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    raise AssertionError("no chromium on PATH: run tests/server/setup.sh")


def _run(args: list[str], activity) -> subprocess.CompletedProcess:
    profile = tempfile.mkdtemp(prefix="ls-chromium-")
    start = time.time()
    try:
        return subprocess.run(
            [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-dev-shm-usage",
             "--hide-scrollbars", f"--user-data-dir={profile}", "--window-size=1920,1080",
             f"--virtual-time-budget={VIRTUAL_TIME_MS}", *args],
            capture_output=True, timeout=CHROMIUM_TIMEOUT)
    finally:
        activity.record(start, time.time())
        shutil.rmtree(profile, ignore_errors=True)


def render_host_dashboard(api, frontend, activity, hostid: str, out: Path, period: int,
                          db, rights_field: str = "rights") -> Path:
    """`db`: the server's database (`psql(sql)`), for the guest's one display setting below."""
    # 6.0: host groups are "groups" and the rights "rights"; 7.0: "hostgroups" and
    # "hostgroup_rights".
    select = "selectGroups" if rights_field == "rights" else "selectHostGroups"
    [host] = api.call("host.get", {"hostids": hostid, "output": ["host"],
                                   "selectParentTemplates": ["templateid"],
                                   select: ["groupid"]})
    groups = host.get("groups") or host.get("hostgroups")
    [dash] = api.call("templatedashboard.get", {
        "templateids": [t["templateid"] for t in host["parentTemplates"]],
        "output": ["dashboardid", "name"], "selectPages": "extend"})
    widgets = [w["name"] for p in dash["pages"] for w in p["widgets"]]
    url = (f"zabbix.php?action=host.dashboard.view&hostid={hostid}"
           f"&dashboardid={dash['dashboardid']}&from=now-{period}s&to=now")
    if rights_field == "rights":
        # 6.0: templates are in host groups too, and a widget of a template dashboard refers
        # to the template's graph: without read access to its group the widget says "No
        # permissions to referred object". (7.0 has template groups and does not ask.)
        groups = groups + api.call("template.get", {
            "templateids": [t["templateid"] for t in host["parentTemplates"]],
            "output": ["templateid"], "selectGroups": ["groupid"]})[0]["groups"]
    api.call("usergroup.update", {"usrgrpid": GUESTS_GROUP, rights_field: [
        {"permission": 2, "id": g["groupid"]} for g in groups]})
    api.call("user.update", {"userid": GUEST_ID, "url": url,
                             "usrgrps": [{"usrgrpid": GUESTS_GROUP}]})
    # The time selector starts expanded for a user who never closed it (the profile
    # web.dashboard.filter.active, default 1), which would take a fifth of the screen: start
    # the guest with it closed, as a user who once closed it sees it. The API has no call for
    # user profiles; the row is the frontend's own (type 2: an integer).
    db.psql(f"DELETE FROM profiles WHERE userid={GUEST_ID} AND idx='web.dashboard.filter.active'")
    db.psql("INSERT INTO profiles (profileid, userid, idx, idx2, value_id, value_int, value_str,"
            f" source, type) VALUES (990001, {GUEST_ID}, 'web.dashboard.filter.active', 0, 0, 0,"
            " '', '', 2)")
    entry = frontend.url + "index.php?enter=guest"

    dom = _run(["--dump-dom", entry], activity)
    text = dom.stdout.decode(errors="replace")
    assert dom.returncode == 0 and "<html" in text, (
        f"chromium --dump-dom exited {dom.returncode}: {dom.stderr.decode()[-2000:]}")
    page = html.unescape(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".html").write_text(text)  # for whoever looks into a failure
    # The frontend's access-denied page, or an error box (the page's own JS strings name
    # such errors too, so plain text is not enough).
    for bad in ("You have no permissions to access this page", "You are not logged in"):
        assert bad not in page, f"the dashboard page says {bad!r}:\n{page[-3000:]}"
    boxes = re.findall(r'<(?:output|div)[^>]*class="[^"]*msg-bad[^"]*"[^>]*>(.{0,300})', page)
    assert not boxes, f"error messages on the dashboard page: {boxes}"
    empty = re.findall(r'class="nothing-to-show"><td[^>]*>([^<]*)<', page)
    assert not empty, f"widgets with nothing to show: {empty} (see {out.with_suffix('.html')})"
    for name in widgets:
        assert name in page, f"widget {name!r} not on the page:\n{page[-3000:]}"
    charts = re.findall(r"chart2?\.php\?[^\"' ]+", page)
    assert charts, f"no graph images on the dashboard page (see {out.with_suffix('.html')})"

    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    shot = _run([f"--screenshot={out}", entry], activity)
    assert shot.returncode == 0 and out.is_file(), (
        f"chromium --screenshot exited {shot.returncode}: {shot.stderr.decode()[-2000:]}")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000, (
        f"{out}: not a full PNG ({len(data)} bytes)")
    # 1920x1080, as asked.
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1920, 1080), (width, height)
    return out
