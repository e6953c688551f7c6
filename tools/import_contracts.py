"""An import-linter contract type for flowlab: ``public_api`` (used by ``[tool.importlinter]`` in pyproject.toml).

Plugins import only flowlab's public modules: ``source_modules`` (the plugin packages, wildcards allowed) may
import a module of ``package`` only if it is one of ``public_modules`` (the package itself counts as one of its
modules). Imports of a plugin's own submodules and of other libraries are not this contract's business (the
``independence`` contract keeps plugins from importing each other). Only direct imports are checked: what a public
module imports in turn is its own affair.

``lint-imports`` puts the working directory on ``sys.path``, so the contract type is found as
``tools.import_contracts.PublicApiContract`` when run from the repository root.
"""

from __future__ import annotations

from grimp import ImportGraph
from importlinter.application import output
from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck
from importlinter.domain.helpers import module_expressions_to_modules


class PublicApiContract(Contract):
    type_name = "public_api"

    source_modules = fields.SetField(subfield=fields.ModuleExpressionField())
    package = fields.StringField()
    public_modules = fields.SetField(subfield=fields.StringField())

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        package = str(self.package)
        public = {str(name) for name in self.public_modules}  # type: ignore[attr-defined]
        sources = sorted(m.name for m in module_expressions_to_modules(graph, self.source_modules))  # type: ignore[arg-type]
        violations = []
        for root in sources:
            for module in sorted({root, *graph.find_descendants(root)}):
                for imported in sorted(graph.find_modules_directly_imported_by(module)):
                    inside = imported == package or imported.startswith(package + ".")
                    if inside and imported not in public:
                        lines = [
                            detail["line_number"]
                            for detail in graph.get_import_details(importer=module, imported=imported)
                        ]
                        violations.append((module, imported, lines))
        return ContractCheck(kept=not violations, metadata={"violations": violations})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for module, imported, lines in check.metadata["violations"]:
            where = ", ".join(f"l.{line}" for line in lines)
            output.print_error(f"{module} -> {imported} ({where}): not one of the public modules", bold=False)
            output.new_line()
