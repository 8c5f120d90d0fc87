//! Command-line parsing, by hand: a handful of commands does not need a parser crate.

use std::path::PathBuf;

use botfleet::auth::{parse_ttl, Role};

pub const USAGE: &str = "\
usage: botfleet [command]

commands:
  serve [--scheduler]          serve the API (the default); --scheduler also runs the schedule
                               in-process (same as SCHEDULER=internal)
  migrate                      apply database migrations and exit
  run <bot> [--dry-run] [--force]
                               run one pass now, recorded like any other; prints the report
  token --role ROLE --ttl TTL --sub NAME
                               mint an API token (ROLE: viewer, operator, admin; TTL: 30m, 24h, 7d)
  crons check [--file PATH]    validate crons.json
  crons export --format F [--file PATH]
                               print the schedule for vercel, github-actions, crontab or kubernetes
  help, --help                 this text
  version, --version

configuration comes from the environment and .env; see .env.example.";

#[derive(Debug, PartialEq)]
pub enum Command {
    Serve {
        scheduler: bool,
    },
    Migrate,
    Run {
        bot: String,
        dry_run: bool,
        force: bool,
    },
    Token {
        role: Role,
        ttl: chrono::Duration,
        sub: String,
    },
    CronsCheck {
        file: Option<PathBuf>,
    },
    CronsExport {
        format: String,
        file: Option<PathBuf>,
    },
    Help,
    Version,
}

/// Takes `--name value` pairs and bare flags off `args`.
struct Flags<'a> {
    args: &'a [String],
    used: Vec<bool>,
}

impl<'a> Flags<'a> {
    fn new(args: &'a [String]) -> Self {
        Self {
            args,
            used: vec![false; args.len()],
        }
    }

    fn flag(&mut self, name: &str) -> bool {
        match self.args.iter().position(|a| a == name) {
            Some(i) => {
                self.used[i] = true;
                true
            }
            None => false,
        }
    }

    fn value(&mut self, name: &str) -> Result<Option<String>, String> {
        let Some(i) = self.args.iter().position(|a| a == name) else {
            if let Some(i) = self
                .args
                .iter()
                .position(|a| a.starts_with(&format!("{name}=")))
            {
                self.used[i] = true;
                return Ok(Some(self.args[i][name.len() + 1..].to_string()));
            }
            return Ok(None);
        };
        let v = self
            .args
            .get(i + 1)
            .filter(|v| !v.starts_with("--"))
            .ok_or(format!("{name} needs a value"))?;
        self.used[i] = true;
        self.used[i + 1] = true;
        Ok(Some(v.clone()))
    }

    fn positional(&mut self) -> Option<String> {
        let i =
            (0..self.args.len()).find(|i| !self.used[*i] && !self.args[*i].starts_with("--"))?;
        self.used[i] = true;
        Some(self.args[i].clone())
    }

    fn done(self) -> Result<(), String> {
        match self.args.iter().zip(&self.used).find(|(_, u)| !**u) {
            Some((a, _)) => Err(format!("unexpected argument {a:?}")),
            None => Ok(()),
        }
    }
}

pub fn parse(args: &[String]) -> Result<Command, String> {
    let (command, rest) = match args.split_first() {
        None => return Ok(Command::Serve { scheduler: false }),
        Some((c, _)) if c.starts_with("--") && c != "--help" && c != "--version" => {
            // `botfleet --scheduler` means `botfleet serve --scheduler`.
            return parse_serve(args);
        }
        Some((c, rest)) => (c.as_str(), rest),
    };
    match command {
        "serve" => parse_serve(rest),
        "migrate" => Flags::new(rest).done().map(|_| Command::Migrate),
        "run" => {
            let mut f = Flags::new(rest);
            let dry_run = f.flag("--dry-run");
            let force = f.flag("--force");
            let bot = f
                .positional()
                .ok_or("run needs a bot name, e.g. `botfleet run pulse`")?;
            f.done()?;
            Ok(Command::Run {
                bot,
                dry_run,
                force,
            })
        }
        "token" => {
            let mut f = Flags::new(rest);
            let role = f
                .value("--role")?
                .ok_or("token needs --role viewer|operator|admin")?;
            let role = Role::parse(&role).ok_or(format!(
                "--role must be viewer, operator or admin, not {role:?}"
            ))?;
            let ttl = parse_ttl(&f.value("--ttl")?.unwrap_or_else(|| "24h".into()))?;
            let sub = f
                .value("--sub")?
                .ok_or("token needs --sub NAME (who the token is for)")?;
            f.done()?;
            Ok(Command::Token { role, ttl, sub })
        }
        "crons" => {
            let mut f = Flags::new(rest);
            let action = f.positional().ok_or("crons needs check or export")?;
            let file = f.value("--file")?.map(PathBuf::from);
            let cmd = match action.as_str() {
                "check" => Command::CronsCheck { file },
                "export" => {
                    let format = f.value("--format")?.ok_or(format!(
                        "crons export needs --format {}",
                        botfleet::crons_export::FORMATS.join("|")
                    ))?;
                    Command::CronsExport { format, file }
                }
                other => return Err(format!("crons {other:?}: use check or export")),
            };
            f.done()?;
            Ok(cmd)
        }
        "help" | "--help" | "-h" => Ok(Command::Help),
        "version" | "--version" | "-V" => Ok(Command::Version),
        other => Err(format!("unknown command {other:?}")),
    }
}

fn parse_serve(args: &[String]) -> Result<Command, String> {
    let mut f = Flags::new(args);
    let scheduler = f.flag("--scheduler");
    f.done()?;
    Ok(Command::Serve { scheduler })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Command, String> {
        let args: Vec<String> = s.split_whitespace().map(String::from).collect();
        parse(&args)
    }

    #[test]
    fn commands() {
        assert_eq!(p("").unwrap(), Command::Serve { scheduler: false });
        assert_eq!(
            p("serve --scheduler").unwrap(),
            Command::Serve { scheduler: true }
        );
        assert_eq!(
            p("--scheduler").unwrap(),
            Command::Serve { scheduler: true }
        );
        assert_eq!(
            p("run pulse --dry-run").unwrap(),
            Command::Run {
                bot: "pulse".into(),
                dry_run: true,
                force: false
            }
        );
        assert!(matches!(
            p("token --role admin --ttl 1h --sub ops").unwrap(),
            Command::Token {
                role: Role::Admin,
                ..
            }
        ));
        assert!(p("token --role root --sub x")
            .unwrap_err()
            .contains("viewer, operator or admin"));
        assert_eq!(
            p("crons export --format crontab").unwrap(),
            Command::CronsExport {
                format: "crontab".into(),
                file: None
            }
        );
        assert!(p("run").is_err());
        assert!(p("serve --nope").unwrap_err().contains("--nope"));
        assert!(p("launch").is_err());
    }
}
