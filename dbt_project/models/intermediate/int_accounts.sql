-- one row per account of every platform: a klaviyo account or a segments-api workspace,
-- with the name the marts show and the timezone its days are in
select
    'klaviyo' as platform,
    account_id,
    account_name,
    timezone
from {{ ref('stg_klaviyo__accounts') }}

union all

select
    'segments_api' as platform,
    account_id,
    account_name,
    timezone
from {{ ref('stg_segments_api__workspaces') }}
