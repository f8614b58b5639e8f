-- Galaxy Zoo 1 classifications (zooSpec) joined to SDSS photometry (PhotoObj),
-- spectroscopy (SpecObj) and MPA-JHU stellar masses (galSpecExtra).
-- Placeholders filled by tasks/ingest.py: {top} (e.g. "TOP 50000" or empty),
-- {after_objid} (keyset paging on objid) and {order_by}.
-- Output column    <- SkyServer column
--   objid          <- zooSpec.objid (= PhotoObj.objID)
--   ra, dec        <- PhotoObj.ra, PhotoObj.dec (degrees)
--   redshift       <- SpecObj.z
--   mag_u .. mag_z <- PhotoObj.dered_u .. dered_z (model magnitudes, extinction corrected)
--   deVRad_r       <- PhotoObj.deVRad_r    deVAB_r <- PhotoObj.deVAB_r
--   expRad_r       <- PhotoObj.expRad_r    expAB_r <- PhotoObj.expAB_r
--   stellar_mass   <- galSpecExtra.lgm_tot_p50 (log10 M*/Msun; -9999 where missing)
--   votes          <- zooSpec.nvote
--   p_el_debiased, p_cs_debiased, spiral, elliptical, uncertain <- zooSpec columns of the same name
SELECT {top}
    zs.objid AS objid,
    p.ra AS ra,
    p.dec AS dec,
    s.z AS redshift,
    p.dered_u AS mag_u,
    p.dered_g AS mag_g,
    p.dered_r AS mag_r,
    p.dered_i AS mag_i,
    p.dered_z AS mag_z,
    p.deVRad_r AS deVRad_r,
    p.deVAB_r AS deVAB_r,
    p.expRad_r AS expRad_r,
    p.expAB_r AS expAB_r,
    ISNULL(g.lgm_tot_p50, -9999) AS stellar_mass,
    zs.nvote AS votes,
    zs.p_el_debiased AS p_el_debiased,
    zs.p_cs_debiased AS p_cs_debiased,
    zs.spiral AS spiral,
    zs.elliptical AS elliptical,
    zs.uncertain AS uncertain
FROM zooSpec AS zs
    JOIN PhotoObj AS p ON p.objID = zs.objid
    JOIN SpecObj AS s ON s.specObjID = zs.specobjid
    LEFT JOIN galSpecExtra AS g ON g.specObjID = zs.specobjid
WHERE zs.objid > {after_objid}
{order_by}
