"""Snakemake adapter: check every weight file the config needs, in one message."""

import sys

from wavbrivl.joblog import job_log
from wavbrivl.weights_check import WeightsError, required_weights, write_record

try:
    with job_log(snakemake.log[0]):
        write_record(required_weights(snakemake.config), snakemake.output[0])
except WeightsError as err:
    sys.exit(str(err))  # the list on the console too, not only in the log
