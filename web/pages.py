"""The HTML pages. Only fixed markup and escaped settings go in here: every message, name and
summary reaches the page as JSON and is put in with textContent by the scripts. No inline
script or style: the Content-Security-Policy (web/app.py) allows neither (a JSON data block is
not a script: the browser never runs it, desk.js reads it as text)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from html import escape
from typing import Any

from web import labels
from web.accounts import Agent

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


def login_page(failed: bool, throttled: bool = False, unavailable: bool = False) -> str:
    error = ('<p class="error" role="alert">登录失败次数过多，请 15 分钟后再试。</p>' if throttled
             else '<p class="error" role="alert">暂时无法登录（审计服务不可用），请稍后再试。</p>' if unavailable
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


ROLE_NAMES = {"agent": "坐席", "reviewer": "审核员", "supervisor": "主管"}
QUICK_REPLIES = ("您好，请问有什么可以帮您？", "请稍等，我为您查询一下。", "还有其他可以帮您的吗？",
                 "感谢您的耐心等待。")


def json_data_block(element_id: str, data: Any) -> str:
    """`data` as a JSON block the page's scripts read. `<`, `>` and `&` are escaped inside the
    strings so no text in it (a customer's words) can close the element or open markup."""
    text = json.dumps(data, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" id="{escape(element_id, quote=True)}">{text}</script>'


def desk_page(agent: Agent, first_page: Mapping[str, Any] | None = None) -> str:
    """The desk. Its filters offer the values web/labels.py names in Chinese; it opens on the
    waiting hand-overs, `first_page` of them sent with the page when the server has it. Each role
    sees the parts it works in."""
    roles = "、".join(ROLE_NAMES[role] for role in sorted(agent.roles))
    handles, reviews = agent.may("handle"), agent.may("review")
    filters = "\n".join((
        _select("status", "状态", labels.STATES, any_value="all", selected="waiting"),
        _select("channel", "渠道", labels.CHANNELS),
        _select("priority", "优先级", labels.PRIORITIES),
        _select("flow", "业务", labels.flow_names())))
    # Logging in is coming to work: online until the agent says otherwise.
    presence = ('<label class="presence">在线状态 <select id="presence"><option value="online" selected>在线</option>'
                '<option value="away">离开</option></select></label>') if handles else ""
    dispositions = "".join(f'<option value="{value}">{escape(word)}</option>'
                           for value, word in labels.DISPOSITIONS.items())
    quick = "".join(f'<button type="button" class="quick">{escape(text)}</button>' for text in QUICK_REPLIES)
    handoff_section = f"""<section aria-labelledby="handoffs-title">
<h2 id="handoffs-title">转人工</h2>
<form id="handoff-filters" class="filters">
<fieldset id="filter-fields"><legend>筛选</legend>
{filters}
</fieldset>
</form>
<form id="handoff-search" class="filters" role="search">
<label>编号或手机号 <input name="handoff_id" placeholder="H-… / 138****5678 / 尾号"
 autocomplete="off" spellcheck="false"></label>
<button type="submit">查找</button> <button type="button" id="search-clear" hidden>清除查找</button>
</form>
<h3 id="mine-title">我的服务中</h3>
<ul id="mine" class="mine" aria-labelledby="mine-title"></ul>
<ul id="handoffs" class="cards" aria-live="polite"></ul>
<nav class="pager" aria-label="转人工分页">
<button type="button" id="page-previous" disabled>上一页</button>
<span id="page-info"></span>
<button type="button" id="page-next" disabled>下一页</button>
</nav>
</section>
<section id="conversation" aria-labelledby="conversation-title" hidden>
<h2 id="conversation-title">会话</h2>
<dl id="conversation-facts"></dl>
<ol id="transcript" class="transcript" role="log" aria-live="polite" aria-label="对话记录"></ol>
<form id="composer" hidden>
<div class="quick-replies" role="group" aria-label="快捷回复">{quick}</div>
<label class="wide">回复客户（Enter 发送，Shift+Enter 换行）
<textarea name="text" rows="3" maxlength="1000"></textarea></label>
<button type="submit">发送</button>
</form>
<form id="closer" hidden>
<label>结束方式 <select name="disposition">{dispositions}</select></label>
<label class="wide">处理备注 <input name="note" maxlength="500" autocomplete="off"></label>
<button type="submit">结束服务</button>
<button type="button" id="do-not-call">客户要求不再来电</button>
</form>
<button type="button" id="conversation-hide">收起</button>
</section>""" if handles else ""
    # Supervisors: the quality inspection's live alerts, pushed (desk.js), the conversations
    # awaiting review, and the conversation of one with its hits.
    quality_section = """<section id="quality-board" aria-labelledby="quality-title">
<h2 id="quality-title">实时质检告警</h2>
<ul id="alerts" class="cards alerts" aria-live="polite"><li class="empty">暂无告警</li></ul>
<section id="pending-reviews" aria-labelledby="pending-title">
<h3 id="pending-title">待复核的会话</h3>
<button type="button" id="pending-refresh">刷新</button>
<ul id="pending" class="cards alerts"><li class="empty">暂无待复核的会话</li></ul>
<nav class="pager" aria-label="待复核分页">
<button type="button" id="pending-previous" disabled>上一页</button>
<span id="pending-info"></span>
<button type="button" id="pending-next" disabled>下一页</button>
</nav>
</section>
<section id="inspected" aria-labelledby="inspected-title" hidden>
<h3 id="inspected-title">告警会话</h3>
<ul id="inspected-hits" class="hits"></ul>
<ol id="inspected-transcript" class="transcript" role="log" aria-label="告警会话的对话记录"></ol>
<button type="button" id="inspected-hide">收起</button>
</section>
</section>""" if agent.may("supervise") else ""
    review_section = """<section aria-labelledby="reviews-title">
<h2 id="reviews-title">待审核的操作</h2>
<ul id="reviews" class="cards" aria-live="polite"></ul>
</section>""" if reviews else ""
    return _HEAD.format(title="坐席工作台", extra='<link rel="stylesheet" href="/static/desk.css">') + f"""
<body data-agent="{escape(agent.login, quote=True)}">
<header><h1>坐席工作台</h1><span>{escape(roles)}：{escape(agent.display_name)}</span>{presence}
<a href="/desk/knowledge">知识库</a>
{'<a href="/desk/campaigns">外呼活动</a> <a href="/desk/figures">服务指标</a>' if agent.may("supervise") else ""}
<form method="post" action="/desk/logout"><button type="submit">退出</button></form></header>
<p id="desk-status" role="status" aria-live="polite"></p>
<main class="desk">
{quality_section}
{handoff_section}
{review_section}
</main>
{json_data_block("first-page", first_page) if first_page else ""}
<script src="/static/desk-dom.js" defer></script>
<script src="/static/desk.js" defer></script>
</body>
</html>
"""


def forbidden_page(why: str) -> str:
    return _HEAD.format(title="无权访问", extra='<link rel="stylesheet" href="/static/desk.css">') + f"""
<body><main class="login"><h1>无权访问</h1><p>{escape(why)}</p><p><a href="/desk">返回工作台</a></p></main>
</body>
</html>
"""


def _supervisors_head(title: str, agent: Agent) -> str:
    """A supervisors' page up to its status line: the title, who is logged in, the way back."""
    return _HEAD.format(title=title, extra='<link rel="stylesheet" href="/static/desk.css">') + f"""
<body data-agent="{escape(agent.login, quote=True)}">
<header><h1>{title}</h1><span>主管：{escape(agent.display_name)}</span><a href="/desk">返回工作台</a>
<form method="post" action="/desk/logout"><button type="submit">退出</button></form></header>"""


def figures_page(agent: Agent, charts: bool) -> str:
    """The service figures for supervisors, day by day: figures.js draws them with Chart.js (served
    from /static/vendor, no CDN; `charts` False when it was not installed: the table alone)."""
    chart_script = '<script src="/static/vendor/chart.umd.js" defer></script>\n' if charts else ""
    return _supervisors_head("服务指标", agent) + f"""
<p id="figures-status" role="status" aria-live="polite"></p>
<main class="desk figures">
<section aria-labelledby="rates-title"><h2 id="rates-title">自助解决、转人工与核身（按日）</h2>
<canvas id="rates-chart" role="img" aria-label="每日比率折线图"></canvas></section>
<section aria-labelledby="calls-title"><h2 id="calls-title">电话：打断与静默（按日）</h2>
<canvas id="calls-chart" role="img" aria-label="每日电话比率折线图"></canvas></section>
<section aria-labelledby="reasons-title"><h2 id="reasons-title">转人工原因（所选天数合计）</h2>
<canvas id="reasons-chart" role="img" aria-label="转人工原因柱状图"></canvas></section>
<section aria-labelledby="table-title"><h2 id="table-title">每日数据</h2>
<table id="figures-table"><thead><tr><th>日期</th><th>会话</th><th>自助解决率</th><th>转人工率</th>
<th>核身通过率</th><th>首次解决率</th><th>平均处理时长（秒）</th><th>电话</th><th>外呼</th></tr></thead>
<tbody></tbody></table>
<h3>低置信度的客户原话（可补充知识库与训练数据）</h3><ul id="low-confidence"></ul>
<h3>知识库答复最多的条目</h3><ul id="knowledge-answers"></ul>
<h3>未能回答的问题（按最接近的知识库条目，可补充或改进该条目）</h3><ul id="unanswered-by-entry"></ul>
<h3>外呼未拨打（按合规规则）</h3><ul id="outbound-skipped"></ul></section>
</main>
{chart_script}<script src="/static/figures.js" defer></script>
</body>
</html>
"""


def campaigns_page(agent: Agent) -> str:
    """Outbound campaigns for supervisors: progress and outcomes, start / pause / stop, CSV export.
    campaigns.js fills the table from /desk/api/campaigns."""
    return _supervisors_head("外呼活动", agent) + """
<p id="campaigns-status" role="status" aria-live="polite"></p>
<main class="desk">
<section aria-labelledby="campaigns-title">
<h2 id="campaigns-title">活动列表</h2>
<ul id="campaigns" class="cards" aria-live="polite"></ul>
</section>
</main>
<script src="/static/desk-dom.js" defer></script>
<script src="/static/campaigns.js" defer></script>
</body>
</html>
"""


def knowledge_page(agent: Agent) -> str:
    """The knowledge base's edits: anyone who handles conversations proposes one (an entry's
    question, paraphrases and answers, a new entry or its retirement), a reviewer other than its
    author approves or rejects it. knowledge.js fills it from /desk/api/knowledge/…"""
    roles = "、".join(ROLE_NAMES.get(role, role) for role in sorted(agent.roles))
    propose = """<section aria-labelledby="propose-title">
<h2 id="propose-title">提议修改知识库</h2>
<form id="knowledge-form" class="knowledge-form">
<label>条目编号 <input id="knowledge-entry-id" name="entry_id" required placeholder="如 card.credit_card"
  pattern="[a-z][a-z0-9_]*[.][a-z][a-z0-9_]*"></label>
<button type="button" id="knowledge-load">载入</button>
<p id="knowledge-entry-state" aria-live="polite"></p>
<label>标准问题 <input id="knowledge-question" name="question" required maxlength="80"></label>
<label>其他问法（每行一个，至少三个）
<textarea id="knowledge-paraphrases" name="paraphrases" rows="5" required></textarea></label>
<label>文字答复（在线客服） <textarea id="knowledge-chat" name="chat" rows="3" maxlength="300"></textarea></label>
<label>语音答复（电话，数字写成汉字）
<textarea id="knowledge-voice" name="voice" rows="2" maxlength="120"></textarea></label>
<label><input type="checkbox" id="knowledge-retire" name="retire"> 停用这个条目</label>
<label>修改原因 <textarea id="knowledge-reason" name="reason" rows="2" required maxlength="500"></textarea></label>
<button type="submit" id="knowledge-submit">提交审核</button>
</form>
<ul id="knowledge-problems" class="problems" aria-live="polite"></ul>
</section>""" if agent.may("handle") else ""
    title = "待审核的提议" if agent.may("review") else "我的提议"
    return _HEAD.format(title="知识库", extra='<link rel="stylesheet" href="/static/desk.css">') + f"""
<body data-agent="{escape(agent.login, quote=True)}">
<header><h1>知识库</h1><span>{escape(roles)}：{escape(agent.display_name)}</span><a href="/desk">返回工作台</a>
<form method="post" action="/desk/logout"><button type="submit">退出</button></form></header>
<p id="knowledge-status" role="status" aria-live="polite"></p>
<main class="desk knowledge">
{propose}
<section aria-labelledby="proposals-title">
<h2 id="proposals-title">{title}</h2>
<label>状态 <select id="proposals-status"><option value="pending">待审核</option>
<option value="approved">已发布</option><option value="rejected">已驳回</option></select></label>
<ul id="proposals" class="cards" aria-live="polite"></ul>
<div class="pager"><button type="button" id="proposals-previous">上一页</button><span id="proposals-info"></span>
<button type="button" id="proposals-next">下一页</button></div>
</section>
</main>
<script src="/static/desk-dom.js" defer></script>
<script src="/static/knowledge.js" defer></script>
</body>
</html>
"""
