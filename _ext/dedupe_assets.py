"""Drop repeated <script> entries from each page.

With jupyter-book 1.0.4.post1, sphinx-thebe's and sphinx-togglebutton's inline scripts are
registered twice (once with filename None, once with ""), so every page declared
``const THEBE_JS_URL`` twice: a JavaScript error in the browser ("has already been declared").
This keeps the first copy of each identical script.
"""


def _key(js) -> str:
    attrs = getattr(js, "attributes", None) or {}
    return repr((getattr(js, "filename", js) or "", sorted((k, str(v)) for k, v in attrs.items())))


def _dedupe(app, pagename, templatename, context, doctree):
    files = context.get("script_files")
    if not files:
        return
    seen, kept = set(), []
    for js in files:
        if _key(js) not in seen:
            seen.add(_key(js))
            kept.append(js)
    files[:] = kept


def setup(app):
    app.connect("html-page-context", _dedupe, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
