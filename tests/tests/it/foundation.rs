//! Foundation: migrations, catalog import, connection errors, generator determinism.

use std::process::Command;

use oms_tests::{binary, TestEnv};

#[tokio::test]
async fn migrate_twice_is_a_no_op() {
    let env = TestEnv::new().await;
    let report = oms_shared::db::migrate(&env.config.database_url)
        .await
        .unwrap();
    assert!(!report.database_created);
    assert!(
        report.applied.is_empty(),
        "second migrate applied {:?}",
        report.applied
    );
    oms_shared::db::ensure_migrated(&env.db, &env.config.database_url)
        .await
        .unwrap();
}

#[tokio::test]
async fn unmigrated_database_is_refused_in_one_line() {
    let env = TestEnv::new().await;
    let url = format!("{}/{}_empty", oms_tests::mysql_server(), env.database);
    oms_shared::db::create_database_if_missing(&url)
        .await
        .unwrap();
    let pool = oms_shared::db::connect(&url, 1).await.unwrap();
    let err = oms_shared::db::ensure_migrated(&pool, &url)
        .await
        .unwrap_err()
        .to_string();
    sqlx::query(&oms_shared::store::schema::drop_database(&format!(
        "{}_empty",
        env.database
    )))
    .execute(&env.db)
    .await
    .unwrap();
    assert!(
        err.contains("not migrated") && err.contains("producer migrate"),
        "{err}"
    );
}

#[tokio::test]
async fn catalog_import_upserts_and_rejects_bad_rows_with_line_and_reason() {
    let env = TestEnv::new().await;
    let csv = "sku,name,price,stock_quantity\n\
               SKU-1,\"Café, crème\",12.50,10\n\
               SKU-2,Widget,abc,5\n\
               SKU-3,\"multi\nline\",1.00,-1\n\
               SKU-4,Gadget,3,7\n\
               SKU-1,Again,1.00,1\n";
    let file = env.file(csv);
    let report = producer::catalog::import_catalog(&env.db, file.path().to_str().unwrap())
        .await
        .unwrap();
    assert_eq!(report.upserted, 2);
    let rejects: Vec<(u64, &str)> = report.rejected.iter().map(|r| (r.line, r.reason)).collect();
    assert_eq!(
        rejects,
        vec![
            (3, "invalid_price"),
            (4, "invalid_stock"),
            (7, "duplicate_sku")
        ]
    );
    let products = oms_shared::store::catalog::list_products(&env.db)
        .await
        .unwrap();
    assert_eq!(products.len(), 2);
    assert_eq!(products[0].name, "Café, crème");
    assert_eq!(products[0].price.0, 1250);

    // Upsert: a second file changes price and stock of an existing sku.
    let file = env.file("sku,name,price,stock_quantity\nSKU-4,Gadget v2,4.99,70\n");
    producer::catalog::import_catalog(&env.db, file.path().to_str().unwrap())
        .await
        .unwrap();
    let products = oms_shared::store::catalog::list_products(&env.db)
        .await
        .unwrap();
    assert_eq!(
        (
            products[1].name.as_str(),
            products[1].price.0,
            products[1].stock_quantity
        ),
        ("Gadget v2", 499, 70)
    );
}

#[test]
fn unreachable_services_give_one_line_naming_the_host() {
    let out = Command::new(binary("producer"))
        .args(["products", "list"])
        .env("DATABASE_URL", "mysql://root@127.0.0.1:1/oms")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("127.0.0.1:1") && stderr.contains("MySQL"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    let out = Command::new(binary("producer"))
        .args(["status"])
        .env("REDIS_URL", "redis://:hunter2@127.0.0.1:1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("127.0.0.1:1") && stderr.contains("Redis"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn generator_is_byte_identical_for_a_seed() {
    let run = |seed: &str| {
        Command::new(binary("producer"))
            .args([
                "generate",
                "orders",
                "--count",
                "20000",
                "--seed",
                seed,
                "--end-date",
                "2026-11-25",
            ])
            .output()
            .unwrap()
    };
    let (a, b, c) = (run("1"), run("1"), run("2"));
    assert!(a.status.success());
    assert_eq!(a.stdout, b.stdout);
    assert_ne!(a.stdout, c.stdout);
    assert_eq!(
        String::from_utf8_lossy(&a.stdout).lines().next(),
        Some("customer_name,customer_email,products,order_date")
    );
}
