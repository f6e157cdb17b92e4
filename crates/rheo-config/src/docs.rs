//! The configuration reference, generated from the registry: `docs/configuration.md`.

use std::fmt::Write as _;

use crate::option::Section;
use crate::options;

/// The reference of every option, as Markdown.
pub fn reference_markdown() -> String {
    let mut out = String::new();
    let mut line = |text: &str| {
        out.push_str(text);
        out.push('\n');
    };
    line("# Configuration");
    line("");
    line("<!-- Generated from crates/rheo-config/src/options.rs; do not edit. Regenerate with");
    line("     `RHEO_UPDATE_DOCS=1 cargo test -p rheo-config`. -->");
    line("");
    line("Rheo reads Flink's configuration keys from, in rising precedence: the YAML file");
    line("`$RHEO_CONF_DIR/rheo.yaml` (flat `a.b: v` keys or nested maps), `RHEO_*` environment");
    line("variables (the key upper-cased with `.` and `-` as `_`: `RHEO_PARALLELISM_DEFAULT`), and");
    line("`-D key=value` flags. A value an option cannot take stops the process with an error");
    line("naming the key (exit status 2); a key Rheo does not read is logged as a warning that");
    line("names the closest known key. Durations are written as `500 ms`, `10 s`, `1 min`, `2 h`");
    line("(a plain number is milliseconds). Secrets are shown as `******` in `/jobmanager/config`.");
    for section in Section::ALL {
        let mut rows = options::ALL.iter().filter(|o| o.section() == section).peekable();
        if rows.peek().is_none() {
            continue;
        }
        line("");
        line(&format!("## {}", section.title()));
        line("");
        line("| Key | Default | Type | Description |");
        line("| --- | --- | --- | --- |");
        for option in rows {
            let default = option.default_text().map_or("(none)".to_string(), |d| format!("`{d}`"));
            let mut description = option.description().to_string();
            if let Some(constraint) = option.constraint_text() {
                let _ = write!(description, " Accepts {constraint}.");
            }
            if option.is_secret() {
                description.push_str(" Secret: masked and never logged.");
            }
            line(&format!(
                "| `{}` | {default} | {} | {} |",
                option.key(),
                option.type_name(),
                description.replace('|', "\\|")
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn docs_configuration_md_is_in_sync_with_the_registry() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/configuration.md");
        let generated = super::reference_markdown();
        if std::env::var_os("RHEO_UPDATE_DOCS").is_some() {
            std::fs::write(path, &generated).unwrap();
        }
        let written = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            written == generated,
            "docs/configuration.md is out of date: regenerate it with `RHEO_UPDATE_DOCS=1 cargo test -p rheo-config`"
        );
    }
}
