use super::system::parse_passwd;
use super::*;
use sqlx::ConnectOptions as _;
use sqlx::postgres::PgConnectOptions;
use std::str::FromStr;

fn temp_dir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    // Short on purpose: the socket path must stay within 107 bytes.
    std::env::temp_dir().join(format!(
        "hg-{tag}-{}-{}",
        std::process::id(),
        nanos % 1_000_000
    ))
}

async fn select_one(cluster: &ManagedCluster, db: &str) -> i32 {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&cluster.url(db))
        .await
        .expect("connect over the socket");
    let (one,): (i32,) = sqlx::query_as("SELECT 1").fetch_one(&pool).await.unwrap();
    let (current,): (String,) = sqlx::query_as("SELECT current_database()")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(current, db);
    pool.close().await;
    one
}

fn postmaster_pid(cluster: &ManagedCluster) -> i32 {
    read_postmaster_pid(&cluster.data_dir.join("postmaster.pid")).expect("a running server")
}

/// One test, because each phase depends on the state the one before left behind.
#[tokio::test(flavor = "multi_thread")]
async fn creates_starts_reuses_restarts_and_stops_a_real_cluster() {
    if find_bindir(
        Path::new("/usr/lib/postgresql"),
        std::env::var_os("PATH").as_deref(),
        None,
    )
    .is_none()
    {
        eprintln!("skipped: no PostgreSQL server programs installed");
        return;
    }
    let dir = temp_dir("pg");
    let cluster = ManagedCluster::start(&dir).await.unwrap();
    cluster.ensure_database("x").await.unwrap();
    cluster.ensure_database("x").await.unwrap();
    cluster.ensure_database("odd name+'\"").await.unwrap();
    assert_eq!(select_one(&cluster, "x").await, 1);
    assert_eq!(select_one(&cluster, "odd name+'\"").await, 1);

    // As after hubgate was killed: the server is still up and must be taken over as is.
    let pid = postmaster_pid(&cluster);
    let again = ManagedCluster::start(&dir).await.unwrap();
    assert_eq!(postmaster_pid(&again), pid);
    assert_eq!(select_one(&again, "x").await, 1);

    again.stop().await.unwrap();
    assert!(!cluster.data_dir.join("postmaster.pid").exists());
    again.stop().await.unwrap();

    // A pid file left by a server that died with the machine, its pid since reused.
    fs::write(
        cluster.data_dir.join("postmaster.pid"),
        format!("{}\n{}\n", std::process::id(), cluster.data_dir.display()),
    )
    .unwrap();
    let restarted = ManagedCluster::start(&dir).await.unwrap();
    assert_ne!(postmaster_pid(&restarted), pid);
    assert_eq!(select_one(&restarted, "x").await, 1);
    restarted.stop().await.unwrap();

    let conf = fs::read_to_string(cluster.data_dir.join("postgresql.conf")).unwrap();
    assert_eq!(conf.matches("include 'hubgate.conf'").count(), 1);

    // As an older version left it: authentication by `trust` and no password file. The next
    // start gives the superuser a password and takes `trust` away.
    let old_password = restarted.password.clone();
    restarted.write_hba_text("local all all trust\n").unwrap();
    fs::remove_file(dir.join("password")).unwrap();
    let upgraded = ManagedCluster::start(&dir).await.unwrap();
    assert_ne!(upgraded.password, old_password);
    assert_eq!(
        fs::read_to_string(dir.join("password")).unwrap().trim(),
        upgraded.password
    );
    assert_eq!(select_one(&upgraded, "x").await, 1);
    let hba = fs::read_to_string(upgraded.data_dir.join("pg_hba.conf")).unwrap();
    assert!(!hba.contains("trust"), "{hba}");
    let no_password = upgraded
        .url("x")
        .replace(&format!(":{}@", upgraded.password), "@");
    let refused = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&no_password)
        .await;
    assert!(refused.is_err(), "connected without the password");
    let wrong = upgraded.url("x").replace(&upgraded.password, &old_password);
    let refused = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&wrong)
        .await;
    assert!(refused.is_err(), "connected with the old password");
    upgraded.stop().await.unwrap();

    if cluster.server_dir != cluster.dir {
        fs::remove_dir_all(&cluster.server_dir).unwrap();
    }
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn url_names_the_socket_directory_in_a_form_sqlx_accepts() {
    let cluster = ManagedCluster {
        dir: "/var/lib/hub gate/pgsql".into(),
        server_dir: "/var/lib/hub gate/pgsql".into(),
        data_dir: "/var/lib/hub gate/pgsql/data".into(),
        socket_dir: "/var/lib/hub gate+x/pgsql/socket".into(),
        log_file: "/var/lib/hub gate/pgsql/postgresql.log".into(),
        bindir: "/usr/lib/postgresql/15/bin".into(),
        server_user: None,
        password: "0a1b".into(),
    };
    let url = cluster.url("mail db");
    assert_eq!(
        url,
        "postgres://hubgate:0a1b@localhost:5432/mail%20db?host=/var/lib/hub%20gate%2Bx/pgsql/socket"
    );
    let options = PgConnectOptions::from_str(&url).unwrap();
    assert_eq!(
        options.get_socket(),
        Some(&PathBuf::from("/var/lib/hub gate+x/pgsql/socket"))
    );
    assert_eq!(options.get_database(), Some("mail db"));
    assert_eq!(options.get_username(), "hubgate");
    let url_back = options.to_url_lossy();
    assert!(url_back.as_str().starts_with("postgres://"));
}

#[test]
fn finds_the_newest_server_then_the_clusters_own_version_then_path() {
    let root = temp_dir("bindir");
    let make = |dir: &Path, programs: &[&str]| {
        fs::create_dir_all(dir).unwrap();
        for p in programs {
            fs::write(dir.join(p), b"").unwrap();
        }
    };
    make(&root.join("lib/9.6/bin"), &["initdb", "pg_ctl"]);
    make(&root.join("lib/15/bin"), &["initdb", "pg_ctl"]);
    make(&root.join("lib/16/bin"), &["psql"]);
    make(&root.join("path/bin"), &["initdb", "pg_ctl"]);
    let lib = root.join("lib");
    let path = std::env::join_paths([root.join("nowhere"), root.join("path/bin")]).unwrap();

    assert_eq!(
        find_bindir(&lib, Some(&path), None),
        Some(lib.join("15/bin"))
    );
    assert_eq!(
        find_bindir(&lib, Some(&path), Some("9.6")),
        Some(lib.join("9.6/bin"))
    );
    assert_eq!(
        find_bindir(&root.join("absent"), Some(&path), None),
        Some(root.join("path/bin"))
    );
    assert_eq!(find_bindir(&root.join("absent"), None, None), None);
    fs::remove_dir_all(&root).unwrap();
}

#[test]
fn parses_passwd_and_checks_search_permission() {
    let users = parse_passwd(
        "root:x:0:0:root:/root:/bin/bash\n\
         # comment\n\
         postgres:x:101:104:PostgreSQL administrator,,,:/var/lib/postgresql:/bin/bash\n",
    );
    assert_eq!(users.len(), 2);
    let pg = &users[1];
    assert_eq!((pg.name.as_str(), pg.uid, pg.gid), ("postgres", 101, 104));
    assert_eq!(pg.home, PathBuf::from("/var/lib/postgresql"));

    let dir = temp_dir("search");
    fs::create_dir_all(&dir).unwrap();
    set_mode(&dir, 0o700).unwrap();
    let meta = fs::metadata(&dir).unwrap();
    let stranger = ServerUser {
        name: "nobody-here".into(),
        uid: 54321,
        gid: 54321,
        home: "/".into(),
    };
    assert!(!can_search(&meta, &stranger));
    set_mode(&dir, 0o711).unwrap();
    assert!(can_search(&fs::metadata(&dir).unwrap(), &stranger));
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_recorded_pid_of_another_program_is_not_a_server() {
    assert_eq!(process_is_postgres(std::process::id() as i32), Some(false));
    assert_eq!(process_is_postgres(i32::MAX), Some(false));
}

#[test]
fn quotes_configuration_strings() {
    assert_eq!(conf_quote("/a b/it's"), "'/a b/it''s'");
}
