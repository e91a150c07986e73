// Two ponds on the example orders: `revenue` sums them by day, `weekly` reads
// revenue's daily table and rolls it up by ISO week. Run the outlet with
// `npx filedge pond pulse weekly`: revenue runs first, then weekly; a second
// pulse passes without running either, until a new file commits.
import { pond, sql } from 'filedge/plugins/pond'

export const revenue = pond({
  name: 'revenue',
  version: '1.0.0',
  sources: { orders: '^1' },
  ripples: {
    daily: sql`
      SELECT order_date AS day, count(*) AS orders, sum(amount) AS revenue
      FROM orders
      WHERE status <> 'cancelled'
      GROUP BY order_date
      ORDER BY day`,
  },
})

export const weekly = pond({
  name: 'weekly',
  version: '1.0.0',
  sources: { revenue: '^1' },
  ripples: {
    weeks: sql`
      SELECT date_trunc('week', day) AS week, sum(orders) AS orders, sum(revenue) AS revenue
      FROM revenue.daily
      GROUP BY 1
      ORDER BY 1`,
  },
})
