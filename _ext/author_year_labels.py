"""Author-year labels on the References page ("Snell et al. 2017"), like the citations in the
text, instead of pybtex's default alpha labels ("[SSZ17]").

Registers a pybtex label style and a formatting style, both named ``authoryear``; the book's
``_config.yml`` selects the latter with ``bibtex_default_style``.
"""

from pybtex.plugin import register_plugin
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle


def _last(person) -> str:
    return " ".join(person.last_names).replace("{", "").replace("}", "")


def _label(entry) -> str:
    people = entry.persons.get("author", [])
    if len(people) == 2 and _last(people[1]).lower() == "others":  # "X and others"
        people = [people[0], people[1], people[1]]
    if not people:
        name = entry.fields.get("title", "?").split()[0]
    elif len(people) == 1:
        name = _last(people[0])
    elif len(people) == 2:
        name = f"{_last(people[0])} & {_last(people[1])}"
    else:
        name = f"{_last(people[0])} et al."
    return f"{name} {entry.fields.get('year', '')}".strip()


class AuthorYearLabelStyle(BaseLabelStyle):
    def format_labels(self, sorted_entries):
        """Author-year labels; works that would share one ("Finn et al. 2017" twice) get a, b,
        ... in the order of the sorted list, so that no two labels are the same."""
        entries = list(sorted_entries)
        labels = [_label(e) for e in entries]
        seen: dict[str, int] = {}
        for label in labels:
            if labels.count(label) > 1:
                seen[label] = seen.get(label, 0) + 1
                yield f"{label}{chr(ord('a') + seen[label] - 1)}"
            else:
                yield label


class AuthorYearStyle(UnsrtStyle):
    default_label_style = AuthorYearLabelStyle
    default_sorting_style = "author_year_title"


register_plugin("pybtex.style.labels", "authoryear", AuthorYearLabelStyle)
register_plugin("pybtex.style.formatting", "authoryear", AuthorYearStyle)


def setup(app):
    return {"parallel_read_safe": True, "parallel_write_safe": True}
