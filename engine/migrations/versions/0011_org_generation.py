"""org generation: a counter the database bumps on every change to the organisation

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-27 09:40:00

The engine keeps the organisation (nodes, users, role assignments) in memory
between transactions and checks this one row, read within each transaction,
to know whether its copy is still current. Triggers, not application code,
bump it, so that every writer counts: `gridflow load-org`, the admin pages,
a test's direct UPDATE, or plain SQL typed into psql.
"""
from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

# (table, the changes that matter); migration 0018 adds password_hash (bearer tokens name it)
WATCHED = (
    ("jurisdiction_node", "INSERT OR DELETE OR UPDATE"),
    ("role_assignment", "INSERT OR DELETE OR UPDATE"),
    ("app_user", "INSERT OR DELETE OR UPDATE OF username, display_name, phone, active"),
)


def upgrade():
    op.create_table('org_generation',
                    sa.Column('id', sa.Integer(), nullable=False),
                    sa.Column('generation', sa.BigInteger(), nullable=False),
                    sa.PrimaryKeyConstraint('id'))
    if op.get_bind().dialect.name == "postgresql":
        op.execute("INSERT INTO org_generation (id, generation) VALUES (1, floor(random() * 1e15)::bigint)")
        op.execute("""CREATE OR REPLACE FUNCTION gf_bump_org_generation() RETURNS trigger LANGUAGE plpgsql AS $$
                      BEGIN UPDATE org_generation SET generation = generation + 1 WHERE id = 1; RETURN NULL; END $$""")
        for table, events in WATCHED:
            op.execute(f"CREATE TRIGGER gf_org_changed AFTER {events} ON {table} "
                       "FOR EACH STATEMENT EXECUTE FUNCTION gf_bump_org_generation()")
            op.execute(f"CREATE TRIGGER gf_org_truncated AFTER TRUNCATE ON {table} "
                       "FOR EACH STATEMENT EXECUTE FUNCTION gf_bump_org_generation()")
    else:
        op.execute("INSERT INTO org_generation (id, generation) VALUES (1, abs(random() % 1000000000000000))")
        bump = "BEGIN UPDATE org_generation SET generation = generation + 1 WHERE id = 1; END"
        for table, events in WATCHED:
            for event in events.split(" OR "):
                name = event.split()[0].lower()
                op.execute(f"CREATE TRIGGER gf_org_{table}_{name} AFTER {event} ON {table} FOR EACH ROW {bump}")


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        for table, _events in WATCHED:
            op.execute(f"DROP TRIGGER IF EXISTS gf_org_changed ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS gf_org_truncated ON {table}")
        op.execute("DROP FUNCTION IF EXISTS gf_bump_org_generation()")
    else:
        for table, events in WATCHED:
            for event in events.split(" OR "):
                op.execute(f"DROP TRIGGER IF EXISTS gf_org_{table}_{event.split()[0].lower()}")
    op.drop_table('org_generation')
