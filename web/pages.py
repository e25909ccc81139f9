"""The HTML pages. Only fixed markup and escaped settings go in here: every message, name and
summary reaches the page as JSON and is put in with textContent by the scripts. No inline
script or style: the Content-Security-Policy (web/app.py) allows neither."""

from __future__ import annotations

from collections.abc import Mapping
from html import escape

from web import labels

_HEAD = """<!doctype html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
{extra}
</head>"""


def demo_page(rasa_url: str) -> str:
    """A lender's page with the widget embedded the way any site would: one script tag."""
    return _HEAD.format(title="在线客服演示", extra='<link rel="stylesheet" href="/static/demo.css">') + f"""
<body class="demo">
<main>
<h1>消费金融在线客服</h1>
<p>借款、还款、账户问题，都可以在右下角和智能客服聊。</p>
</main>
<script src="/widget.js" data-server="{escape(rasa_url, quote=True)}" data-title="智能客服" data-open="true"
  defer></script>
</body>
</html>
"""


def login_page(failed: bool, throttled: bool = False) -> str:
    error = ('<p class="error" role="alert">登录失败次数过多，请 15 分钟后再试。</p>' if throttled
             else '<p class="error" role="alert">用户名或密码不正确。</p>' if failed else "")
    return _HEAD.format(title="坐席工作台登录", extra='<link rel="stylesheet" href="/static/desk.css">') + f"""
<body>
<main class="login">
<h1>坐席工作台</h1>
{error}
<form method="post" action="/desk/login">
<label>用户名 <input name="user" autocomplete="username" required></label>
<label>密码 <input name="password" type="password" autocomplete="current-password" required></label>
<button type="submit">登录</button>
</form>
</main>
</body>
</html>
"""


def _select(name: str, label: str, words: Mapping[str, str], any_value: str = "", selected: str = "") -> str:
    options = [(any_value, "全部"), *words.items()]
    markup = "".join(f'<option value="{escape(value, quote=True)}"{" selected" if value == selected else ""}>'
                     f"{escape(word)}</option>" for value, word in options)
    return f'<label>{label} <select name="{name}">{markup}</select></label>'


def desk_page(agent: str) -> str:
    """The desk. Its filters offer the values web/labels.py names in Chinese; it opens on the
    waiting hand-overs."""
    filters = "\n".join((
        _select("status", "状态", labels.STATES, any_value="all", selected="waiting"),
        _select("channel", "渠道", labels.CHANNELS),
        _select("priority", "优先级", labels.PRIORITIES),
        _select("flow", "业务", labels.flow_names())))
    return _HEAD.format(title="坐席工作台", extra='<link rel="stylesheet" href="/static/desk.css">') + f"""
<body>
<header><h1>坐席工作台</h1><span>坐席：{escape(agent)}</span>
<form method="post" action="/desk/logout"><button type="submit">退出</button></form></header>
<p id="desk-status" role="status" aria-live="polite"></p>
<main class="desk">
<section aria-labelledby="handoffs-title">
<h2 id="handoffs-title">转人工</h2>
<form id="handoff-filters" class="filters">
<fieldset id="filter-fields"><legend>筛选</legend>
{filters}
</fieldset>
</form>
<form id="handoff-search" class="filters" role="search">
<label>编号 <input name="handoff_id" placeholder="H-…" autocomplete="off" spellcheck="false"></label>
<button type="submit">查找</button> <button type="button" id="search-clear" hidden>清除查找</button>
</form>
<ul id="handoffs" class="cards" aria-live="polite"></ul>
<nav class="pager" aria-label="转人工分页">
<button type="button" id="page-previous" disabled>上一页</button>
<span id="page-info"></span>
<button type="button" id="page-next" disabled>下一页</button>
</nav>
</section>
<section aria-labelledby="reviews-title">
<h2 id="reviews-title">待审核的操作</h2>
<ul id="reviews" class="cards" aria-live="polite"></ul>
</section>
</main>
<script src="/static/desk.js" defer></script>
</body>
</html>
"""
