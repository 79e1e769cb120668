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


class AuthorYearLabelStyle(BaseLabelStyle):
    def format_labels(self, sorted_entries):
        for entry in sorted_entries:
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
            yield f"{name} {entry.fields.get('year', '')}".strip()


class AuthorYearStyle(UnsrtStyle):
    default_label_style = AuthorYearLabelStyle
    default_sorting_style = "author_year_title"


register_plugin("pybtex.style.labels", "authoryear", AuthorYearLabelStyle)
register_plugin("pybtex.style.formatting", "authoryear", AuthorYearStyle)


def setup(app):
    return {"parallel_read_safe": True, "parallel_write_safe": True}
