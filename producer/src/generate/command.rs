//! `producer generate products|orders`: the clap subcommand, synthetic CSV on stdout (see
//! [`crate::generate`]).

use std::io::Write;
use std::process::ExitCode;

use chrono::NaiveDate;
use clap::Subcommand;

use super::{write_orders, write_products, OrderSpec, ProductSpec};

#[derive(Debug, Subcommand)]
pub enum GenerateCommand {
    /// A catalog CSV `sku,name,price,stock_quantity`.
    Products {
        #[arg(long)]
        count: u32,
        #[arg(long, default_value_t = 1_000)]
        stock: u32,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// An orders CSV `customer_name,customer_email,products,order_date`.
    Orders {
        #[arg(long)]
        count: u64,
        /// Skus are drawn from SKU-000001..SKU-<products>, hot ones more often.
        #[arg(long, default_value_t = 1_000)]
        products: u32,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Dates spread over the last D days.
        #[arg(long, default_value_t = 30)]
        days: u32,
        /// Last day of the window (default: today, UTC); fix it for byte-identical output.
        #[arg(long)]
        end_date: Option<NaiveDate>,
    },
}

pub(crate) fn run(cmd: GenerateCommand) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout().lock();
    let result = match cmd {
        GenerateCommand::Products { count, stock, seed } => {
            write_products(stdout, &ProductSpec { count, stock, seed })
        }
        GenerateCommand::Orders {
            count,
            products,
            seed,
            days,
            end_date,
        } => {
            let end_date = end_date.unwrap_or_else(|| chrono::Utc::now().date_naive());
            write_orders(
                stdout,
                &OrderSpec {
                    count,
                    products,
                    seed,
                    days,
                    end_date,
                },
            )
        }
    };
    match result {
        Ok(()) => {
            std::io::stdout().flush().ok();
            Ok(ExitCode::SUCCESS)
        }
        // A closed pipe (`| head`) is not an error for a generator.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(anyhow::Error::new(e).context("writing to stdout")),
    }
}
