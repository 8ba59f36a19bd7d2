"""edgeupdate.fleet: WHO THE DEVICES ARE. Pure Python/numpy; never imports Flower or Ray.

Device profiles and the tier catalog (:mod:`~edgeupdate.fleet.profiles`,
:mod:`~edgeupdate.fleet.catalog`), fleets from a mixture or a CSV (:mod:`~edgeupdate.fleet.devices`),
links and compute on the simulated clock (:mod:`~edgeupdate.fleet.network`), fault injection
(:mod:`~edgeupdate.fleet.faults`), what a round does to each device (:mod:`~edgeupdate.fleet.rounds`)
and the fleet of one run (:mod:`~edgeupdate.fleet.simulated`).
"""
