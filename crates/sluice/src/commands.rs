//! The one-shot subcommands: migrate, backup, token create, channel list, secrets rotate.

use anyhow::Context;
use sluice_store::{NewToken, Role, Secrets, Store};

use crate::cli::{BackupArgs, ChannelCommand, LedgerArgs, SecretsCommand, TokenCommand};
use crate::config::redact_url;

/// `sluice migrate`
pub async fn migrate(ledger: LedgerArgs) -> anyhow::Result<()> {
    let store = ledger.open().await?;
    store.ensure_default_project().await?;
    store.close().await;
    println!("migrations applied");
    Ok(())
}

/// `sluice backup DIR`
///
/// SQLite: copies the ledger (journal of requests in flight first, then a `VACUUM INTO`
/// snapshot of the ledger file; see `sluice_store::backup` for why that order loses no finished
/// request), the key file and the node id into `DIR`, a directory `sluice serve --data-dir`
/// starts from as it is. The ledger is not opened through the store: a backup neither creates
/// nor migrates the ledger it copies. PostgreSQL: its own tools do it better (a consistent
/// snapshot of every table while sluice serves), so this only says how.
pub async fn backup(args: BackupArgs) -> anyhow::Result<()> {
    let url = args.ledger.url();
    if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        print_postgres_backup(&redact_url(&url));
        return Ok(());
    }
    let Some(ledger) = sluice_store::backup::sqlite_file(&url) else {
        anyhow::bail!(
            "unsupported database URL {}: use sqlite:// or postgres://",
            redact_url(&url)
        );
    };
    let done = sluice_store::backup::backup_sqlite(&ledger, &args.ledger.data_dir, &args.dir)
        .await
        .with_context(|| {
            format!(
                "backing up {} into {}",
                ledger.display(),
                args.dir.display()
            )
        })?;
    println!(
        "backed up the SQLite ledger {} into {}",
        ledger.display(),
        done.dir.display()
    );
    println!(
        "  {}: {} request rows",
        done.ledger.display(),
        done.request_rows
    );
    println!(
        "  {}: {} journal segments ({} completed requests to be written as rows, {} in flight \
         to be closed as interrupted, at its first start)",
        done.journal.display(),
        done.segments,
        done.journaled_completions,
        done.in_flight
    );
    match &done.secret_key {
        Some(p) => println!("  {} (mode 0600: it opens the credentials)", p.display()),
        None => println!(
            "  no {} in {}: start the copy with the same --secret-key / SLUICE_SECRET_KEY",
            sluice_store::secrets::KEY_FILE,
            args.ledger.data_dir.display()
        ),
    }
    if let Some(p) = &done.node_id {
        println!("  {}", p.display());
    }
    println!(
        "to start from it: sluice serve --data-dir {}",
        done.dir.display()
    );
    Ok(())
}

/// How to back up and restore a PostgreSQL ledger, for `url` (its password hidden).
fn print_postgres_backup(url: &str) {
    println!("The ledger is on PostgreSQL: sluice backup copies nothing; use PostgreSQL's tools.");
    println!("Back up while sluice serves (pg_dump reads one consistent snapshot):");
    println!("    pg_dump --format=custom '{url}' > sluice.dump");
    println!("Restore into a new, empty database, then start sluice on it:");
    println!("    pg_restore --dbname '<new database url>' sluice.dump");
    println!("    sluice serve --database-url '<new database url>'");
    println!(
        "with the same keys: the same --secret-key / SLUICE_SECRET_KEY, or a copy of \
         <data-dir>/secret.key in the new --data-dir (the keys open the credentials)."
    );
}

/// `sluice token …`
pub async fn token(cmd: TokenCommand) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Create {
            ledger,
            name,
            user,
            project,
            role,
        } => {
            let store = ledger.open().await?;
            store.ensure_default_project().await?;
            let role = Role::parse(&role).expect("clap restricts the role");
            let user_id = match &user {
                Some(u) => match store.user_by_name(u).await? {
                    Some(r) => Some(r.user.id),
                    None => anyhow::bail!("no user named {u:?}"),
                },
                None => None,
            };
            let project_id = match &project {
                Some(p) => Some(project_id(&store, p).await?),
                None => None,
            };
            let new = NewToken {
                name,
                role,
                user_id,
                project_id,
                expires_at: None,
            };
            let (token, secret) = store.create_token(&new, "cli").await?;
            store.close().await;
            let whose = user.map_or_else(|| "instance".to_string(), |u| format!("{u}'s"));
            println!(
                "created {whose} {} token {:?} ({}); it is shown only once:",
                token.role.as_str(),
                token.name,
                token.id
            );
            println!("{secret}");
            Ok(())
        }
    }
}

/// A project named by its id or its name.
async fn project_id(store: &Store, given: &str) -> anyhow::Result<uuid::Uuid> {
    if let Ok(id) = uuid::Uuid::parse_str(given) {
        if store.project_exists(id).await? {
            return Ok(id);
        }
    }
    match store.project_by_name(given).await? {
        Some(p) => Ok(p.id),
        None => anyhow::bail!("no project named {given:?}"),
    }
}

/// `sluice channel …`
pub async fn channel(cmd: ChannelCommand) -> anyhow::Result<()> {
    match cmd {
        ChannelCommand::List { ledger } => {
            let store = ledger.open().await?;
            let mut after = None;
            loop {
                let page = store.list_channels(None, after, 500).await?;
                for c in &page {
                    let state = if c.enabled { "enabled" } else { "disabled" };
                    println!("{}\t{}\t{}\t{}", c.id, state, c.name, c.sink_url);
                }
                match page.last() {
                    Some(c) if page.len() == 500 => after = Some(c.id),
                    _ => break,
                }
            }
            store.close().await;
            Ok(())
        }
    }
}

/// `sluice secrets …`
pub async fn secrets(cmd: SecretsCommand) -> anyhow::Result<()> {
    match cmd {
        SecretsCommand::Rotate { ledger, secrets } => {
            std::fs::create_dir_all(&ledger.data_dir)?;
            let keys = Secrets::load(secrets.secret_key.as_deref(), &ledger.data_dir)?;
            let key_id = keys.rotate()?;
            // Opened after the rotation, so its keyring already seals with the new key.
            let store = ledger.open_with_secrets(&secrets).await?;
            let n = store.reseal_credentials().await?;
            store.close().await;
            println!("re-sealed {n} credentials under key {key_id}");
            Ok(())
        }
    }
}
